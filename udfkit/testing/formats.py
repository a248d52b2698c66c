"""The conformance suite of data set formats: :class:`DataSetTests`.

Every format's test module subclasses :class:`DataSetTests`, says how to write an array in
the format and what the format can store, and inherits the checks of the central
invariant (DESIGN.md, "Numbers match numpy"):

* **tiles** of every partition equal the numpy array, for every stored dtype, with and
  without a ROI, with positive and negative ``sync_offset``, one or several partitions, tile
  shapes that split the frame at several depths, and every I/O backend;
* **UDF results** (``SumUDF``, ``SumSigUDF``) equal numpy on every executor, with and without
  a ROI;
* what ``udfkit info`` reports (:func:`udfkit.cli.info.describe`) matches the data;
* **partitions** survive ``pickle`` and ``cloudpickle`` and give the same tiles afterwards;
* a **corrupted** (truncated) file gives a :class:`~udfkit.errors.DataSetError` that names it,
  at load or at run, and the Context stays usable;
* a **nav reshape** (``nav_shape=`` with the same number of frames) reads the same frames.

The examples are drawn with hypothesis, few per test and tiny: the suite runs for every
format in the default test run. Values are small integers (quarter steps for float and
complex dtypes), so sums are exact and any difference to numpy is a real error.

This module needs the ``test`` extra (pytest, hypothesis); ``import udfkit`` never imports
:mod:`udfkit.testing`.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from math import prod
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..common import Shape
from ..errors import DataSetError
from ..io.tiling import TilingScheme
from .contexts import ALL_EXECUTORS, SharedContexts
from .profiles import examples
from .tiles import expected_frames, read_all

__all__ = ["DataSetTests", "FormatCase", "make_values"]

#: how a partition travels to a worker: the stdlib pickle (oldest, default and newest
#: protocol) and cloudpickle, which the processes and dask executors use
SERIALIZERS = ("pickle-2", "pickle-4", "pickle-5", "cloudpickle")


def _serializer(name: str):
    if name == "cloudpickle":
        import cloudpickle

        return cloudpickle.dumps, cloudpickle.loads
    protocol = int(name.split("-")[1])
    return (lambda obj: pickle.dumps(obj, protocol=protocol)), pickle.loads


def make_values(dtype, shape, seed: int) -> np.ndarray:
    """Random values of ``dtype`` whose sums are exact in float32 and float64.

    Small integers (quarter steps for float and complex dtypes), about one in ten zero.

    Examples
    --------
    >>> v = make_values(">f4", (3, 4), seed=0)
    >>> v.dtype.str, v.shape, bool((v * 4 == np.round(v * 4)).all())
    ('>f4', (3, 4), True)
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind == "u":
        values = rng.integers(0, 50, size=shape, endpoint=True)
    elif dtype.kind == "i":
        values = rng.integers(-50, 50, size=shape, endpoint=True)
    elif dtype.kind == "c":
        values = (rng.integers(-200, 201, size=shape) + 1j * rng.integers(-200, 201, size=shape)) / 4
    else:
        values = rng.integers(-200, 201, size=shape) / 4
    values = np.asarray(values)
    values[rng.random(shape) < 0.1] = 0
    return values.astype(dtype)


class FormatCase:
    """One drawn data set: shapes, stored dtype, load options, ROI and tiling.

    Parameters
    ----------
    nav_shape, sig_shape : tuple of int
        The shape the data are written in (nav 1-D or 2-D).
    dtype : dtype
        The stored dtype (byte order included).
    sync_offset : int
        Position ``i`` holds stored frame ``i + sync_offset``.
    num_partitions : int
        Asked for at load.
    roi : ndarray of bool or None
        Nav-shaped.
    io_backend : str or None
        Passed as ``io_backend=`` when not None.
    tile_sig : tuple of int
        Signal part of the forced tile shape (:meth:`scheme`).
    depth : int
        Frames per forced tile.
    seed : int
        Of the values.

    Examples
    --------
    >>> case = FormatCase(nav_shape=(2, 3), sig_shape=(4, 4), dtype=">u2", sync_offset=-1)
    >>> case.data.shape, case.data.dtype.str
    ((2, 3, 4, 4), '>u2')
    >>> frames, processed = case.expected()
    >>> frames.dtype.str, processed.tolist()
    ('<u2', [False, True, True, True, True, True])
    """

    def __init__(self, *, nav_shape, sig_shape, dtype, sync_offset=0, num_partitions=1, roi=None,
                 io_backend=None, tile_sig=None, depth=3, seed=0):
        self.nav_shape = tuple(nav_shape)
        self.sig_shape = tuple(sig_shape)
        self.dtype = np.dtype(dtype)
        self.sync_offset = int(sync_offset)
        self.num_partitions = int(num_partitions)
        self.roi = roi
        self.io_backend = io_backend
        self.tile_sig = self.sig_shape if tile_sig is None else tuple(tile_sig)
        self.depth = int(depth)
        self.seed = int(seed)
        self.data = make_values(self.dtype, self.nav_shape + self.sig_shape, self.seed)

    @property
    def nav_size(self) -> int:
        return prod(self.nav_shape)

    @property
    def frames(self) -> np.ndarray:
        """The stored frames, ``(image_count, *sig)``."""
        return self.data.reshape((self.nav_size,) + self.sig_shape)

    def scheme(self) -> TilingScheme:
        """The forced tiling scheme: ``tile_sig`` parts of the frame, ``depth`` frames deep."""
        return TilingScheme.make(self.sig_shape, self.tile_sig, self.depth, "tile")

    def expected(self):
        """``(frames, processed)`` as in :func:`~udfkit.testing.tiles.expected_frames`, the
        frames in native byte order."""
        data, processed = expected_frames(self.frames, self.nav_size, self.sync_offset, self.roi)
        return data.astype(self.dtype.newbyteorder("=")), processed

    def __repr__(self):
        roi = None if self.roi is None else self.roi.astype(int).tolist()
        return (f"FormatCase(nav={self.nav_shape}, sig={self.sig_shape}, dtype={self.dtype.str!r}, "
                f"sync_offset={self.sync_offset}, num_partitions={self.num_partitions}, "
                f"io_backend={self.io_backend!r}, tile=({self.depth}, *{self.tile_sig}), "
                f"seed={self.seed}, roi={roi})")


def _sync_offsets(nav_size: int, enabled: bool):
    """0, a positive or a negative offset, each about as often."""
    if not enabled or nav_size == 1:
        return st.just(0)
    return st.one_of(st.just(0), st.integers(1, nav_size - 1), st.integers(-(nav_size - 1), -1))


@st.composite
def _cases(draw, *, dtypes, sig_dims, io_backends, sync_offset=True, roi_kinds=("none", "random"),
           max_partitions=6):
    nav_shape = draw(st.one_of(st.tuples(st.integers(1, 12)),
                               st.tuples(st.integers(1, 4), st.integers(1, 4))))
    n_sig = draw(st.sampled_from(sig_dims))
    # frames of at most a few hundred elements, whatever the number of signal axes
    side = st.integers(1, 6 if n_sig <= 2 else 3)
    sig_shape = tuple(draw(side) for _ in range(n_sig))
    nav_size = prod(nav_shape)
    roi = None
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.sampled_from(roi_kinds)) == "random":
        density = draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))
        roi = np.random.default_rng(seed + 1).random(nav_shape) < density
    return FormatCase(
        nav_shape=nav_shape, sig_shape=sig_shape, dtype=draw(st.sampled_from(dtypes)),
        sync_offset=draw(_sync_offsets(nav_size, sync_offset)),
        num_partitions=draw(st.integers(1, max_partitions)), roi=roi,
        io_backend=draw(st.sampled_from(io_backends)),
        tile_sig=tuple(draw(st.integers(1, s)) for s in sig_shape),
        depth=draw(st.integers(1, 5)), seed=seed)


class DataSetTests:
    """Conformance tests every data set format passes; subclass it once per format.

    The subclass is the test class (name it ``Test...``); this base is not collected because
    its name does not start with ``Test``. Contexts of the worker executors start once per
    subclass and close at its end.

    Attributes
    ----------
    format : str
        The name for ``ctx.load``.
    dtypes : tuple of str
        The dtypes the format can store (byte order included, e.g. ``">u2"``); the tile test
        runs once per dtype.
    io_backends : tuple of str
        The ``io_backend=`` values that apply; ``()`` for formats that decode through a library
        (``io_backend`` is then never passed).
    sig_dims : int or tuple of int
        The numbers of signal axes to write with (default 2).
    supports_sync_offset : bool
        Whether ``sync_offset=`` is accepted (default True; else it is never passed).
    supports_nav_reshape : bool
        Whether ``nav_shape=`` may give another nav shape of the same size (default True).
    supports_corrupt : bool
        Whether the data lie in files that :meth:`corrupt` can damage (default True; False
        for formats without files, such as ``memory``).
    executors : tuple of str
        Executors the UDF tests run on, keys of
        :data:`udfkit.testing.contexts.ALL_EXECUTORS` (default inline, threads, processes,
        dask).
    max_examples : int
        Hypothesis examples per test (default 8; half of it, at least 2, on executors with
        workers, where every run costs a few milliseconds per partition), scaled by the
        active hypothesis profile (:mod:`udfkit.testing.profiles`).

    Examples
    --------
    A format's test module, here for the ``memory`` format:

    >>> class TestMemory(DataSetTests):
    ...     format = "memory"
    ...     dtypes = ("uint16", "float32")
    ...     io_backends = ()
    ...     sig_dims = (1, 2)
    ...     supports_corrupt = False
    ...
    ...     def write(self, tmp_path, data, *, sig_dims):
    ...         return dict(data=data, sig_dims=sig_dims)
    """

    format: ClassVar[str]
    dtypes: ClassVar[tuple] = ("uint8", "uint16", ">u2", "int32", "float32", ">f4", "float64",
                               "complex64")
    io_backends: ClassVar[tuple] = ()
    sig_dims: ClassVar[int | tuple] = 2
    supports_sync_offset: ClassVar[bool] = True
    supports_nav_reshape: ClassVar[bool] = True
    supports_corrupt: ClassVar[bool] = True
    executors: ClassVar[tuple] = ("inline", "threads", "processes", "dask")
    max_examples: ClassVar[int] = 8

    # -- what a format provides -------------------------------------------------------------

    def write(self, tmp_path: Path, data: np.ndarray, *, sig_dims: int) -> dict:
        """Write ``data`` in this format under ``tmp_path``; return the ``ctx.load`` parameters.

        Parameters
        ----------
        tmp_path : pathlib.Path
            An empty directory for this data set.
        data : ndarray
            Shape ``nav + sig`` in C order, nav 1-D or 2-D; its dtype is one of :attr:`dtypes`.
        sig_dims : int
            How many trailing axes of ``data`` are the signal.

        Returns
        -------
        dict
            Keyword parameters of ``ctx.load(format, ...)`` that give back ``data`` with its
            nav and sig shapes (``path=``, and what else the format needs). The suite adds
            ``sync_offset``, ``num_partitions``, ``io_backend`` and ``nav_shape`` as it tests
            them.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement write()")

    def corrupt(self, params: dict) -> None:
        """Damage the files written for ``params`` (the return value of :meth:`write`).

        Afterwards, loading or running must raise a :class:`~udfkit.errors.DataSetError` that
        names one of :meth:`file_names`. The default truncates ``params["path"]`` to half its
        size.
        """
        path = params["path"]
        if not os.path.isfile(path):
            raise NotImplementedError(f"{type(self).__name__}: {path!r} is not one file; "
                                      "override corrupt()")
        os.truncate(path, os.path.getsize(path) // 2)

    def file_names(self, params: dict) -> list[str]:
        """Base names of the files of ``params``, one of which a :class:`DataSetError` about
        them must name (default: those of ``params["path"]``, one path or a list)."""
        paths = params["path"]
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return [os.path.basename(os.fspath(p)) for p in paths]

    # -- plumbing ----------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc):
        """Parametrize by the class's knobs, so that a failure names its dtype, backend or
        executor.

        A test that takes both ``executor`` and ``io_backend`` gets them in pairs, every
        executor and every backend at least once: where the product costs a worker restart
        per case, the pairs are enough. One that takes ``dtype`` and ``io_backend`` gets
        their whole product, of which the cases beyond such pairs are marked ``slow``.
        """
        values = {
            "dtype": list(self.dtypes),
            "io_backend": list(self.io_backends) or [None],
            "executor": list(self.executors),
            "serializer": list(SERIALIZERS),
        }

        def name_of(v):
            return "no-backend" if v is None else str(v)

        names = [n for n in metafunc.fixturenames if n in values]
        if "executor" in names and "io_backend" in names:
            names.remove("executor")
            names.remove("io_backend")
            ex, be = values["executor"], values["io_backend"]
            pairs = [(ex[i % len(ex)], be[i % len(be)]) for i in range(max(len(ex), len(be)))]
            metafunc.parametrize(("executor", "io_backend"), pairs,
                                 ids=[f"{e}-{name_of(b)}" for e, b in pairs])
        if "dtype" in names and "io_backend" in names:
            # every dtype and every backend in the default run, the rest of the product in
            # the slow one (each case is a hypothesis test of its own)
            names.remove("dtype")
            names.remove("io_backend")
            dt, be = values["dtype"], values["io_backend"]
            paired = {(dt[i % len(dt)], be[i % len(be)]) for i in range(max(len(dt), len(be)))}
            metafunc.parametrize(
                ("dtype", "io_backend"),
                [pytest.param(d, b, id=f"{d}-{name_of(b)}",
                              marks=() if (d, b) in paired else pytest.mark.slow)
                 for d in dt for b in be])
        for name in names:
            metafunc.parametrize(name, values[name], ids=[name_of(v) for v in values[name]])

    @pytest.fixture(scope="class")
    @classmethod
    def contexts(cls):
        """The class's Contexts by executor name, started on first use (a classmethod: a
        class-scoped fixture runs once per class, not per test instance)."""
        shared = SharedContexts(ALL_EXECUTORS)
        yield shared
        shared.close_all()

    def _sig_dims(self) -> tuple:
        return (self.sig_dims,) if isinstance(self.sig_dims, int) else tuple(self.sig_dims)

    def _cases(self, **kwargs):
        """Cases drawn from the class's knobs; ``kwargs`` narrow them."""
        kw = dict(dtypes=self.dtypes, sig_dims=self._sig_dims(),
                  io_backends=self.io_backends or (None,), sync_offset=self.supports_sync_offset)
        kw.update(kwargs)
        return _cases(**kw)

    def _examples(self, executor: str = "inline", n: int | None = None):
        """Hypothesis settings: few examples, fewer where workers make each run cost more
        (scaled by the active hypothesis profile)."""
        if n is None:
            n = self.max_examples if executor.startswith("inline") else max(2, self.max_examples // 2)
        return settings(max_examples=examples(n), deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    def load(self, ctx, tmp_path, case: FormatCase, **overrides):
        """Write ``case`` with :meth:`write` and load it; returns ``(dataset, params)``."""
        params = self.write(Path(tmp_path), case.data, sig_dims=len(case.sig_shape))
        kwargs = dict(params, num_partitions=case.num_partitions)
        if self.supports_sync_offset:
            kwargs["sync_offset"] = case.sync_offset
        if case.io_backend is not None:
            kwargs["io_backend"] = case.io_backend
        kwargs.update(overrides)
        return ctx.load(self.format, **kwargs), params

    # -- tiles -------------------------------------------------------------------------------

    def test_tiles_equal_numpy(self, contexts, dtype, io_backend):
        """Every partition's tiles, under a forced tile shape, equal the numpy array: ROI,
        ``sync_offset``, partitions and dest dtype drawn."""
        ctx = contexts("inline")

        @self._examples()
        @given(case=self._cases(dtypes=(dtype,), io_backends=(io_backend,)),
               dest=st.sampled_from(["native", "float32", "float64"]))
        def check(case, dest):
            with tempfile.TemporaryDirectory() as tmp:
                ds, _ = self.load(ctx, tmp, case)
                assert ds.shape == Shape(case.nav_shape + case.sig_shape, sig_dims=len(case.sig_shape))
                ref, processed = case.expected()
                want = ref.dtype if dest == "native" else np.result_type(dest, ref.dtype)

                def read_only(p, t):
                    # one tile is shared by all UDFs of a run: none may change it
                    assert not t.data.flags.writeable

                out, hits = read_all(ds, want, case.scheme(), case.roi, check_tile=read_only)
                assert np.all(hits[processed] == 1), "frames not delivered exactly once"
                assert np.all(hits[~processed] == 0), "frames delivered outside ROI / file"
                np.testing.assert_array_equal(out[processed], ref[processed].astype(want))

        check()

    # -- UDF results -------------------------------------------------------------------------

    @pytest.mark.parametrize("roi_kind", ["none", "random"])
    def test_udf_results_equal_numpy(self, contexts, executor, roi_kind):
        """``SumUDF`` and ``SumSigUDF`` in one pass equal numpy on the processed frames; nav
        positions without a frame or outside the ROI are NaN and invalid."""
        ctx = contexts(executor)
        from ..udf import SumSigUDF, SumUDF

        @self._examples(executor)
        @given(case=self._cases(roi_kinds=(roi_kind,)))
        def check(case):
            with tempfile.TemporaryDirectory() as tmp:
                ds, _ = self.load(ctx, tmp, case)
                res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()], roi=case.roi)
            ref, processed = case.expected()
            wide = np.complex128 if case.dtype.kind == "c" else np.float64
            frames = ref[processed].astype(wide)
            np.testing.assert_allclose(res_sum["intensity"].data, frames.sum(axis=0), rtol=1e-12)
            sums = res_sig["intensity"]
            assert sums.data.shape == case.nav_shape
            flat = sums.data.reshape(-1)
            rows = frames.reshape(len(frames), prod(case.sig_shape))
            np.testing.assert_allclose(flat[processed], rows.sum(axis=1), rtol=1e-12)
            assert np.isnan(flat[~processed]).all(), "positions not processed must be NaN"
            np.testing.assert_array_equal(sums.valid_mask.reshape(-1), processed)

        check()

    # -- what `udfkit info` shows ------------------------------------------------------------

    def test_describe(self, contexts):
        """``udfkit info`` (:func:`udfkit.cli.info.describe`) and the data set's attributes
        report the written shapes, dtype (byte order kept), frame counts and valid positions."""
        from ..cli.info import describe

        ctx = contexts("inline")

        @self._examples()
        @given(case=self._cases(roi_kinds=("none",)))
        def check(case):
            with tempfile.TemporaryDirectory() as tmp:
                params = self.write(Path(tmp), case.data, sig_dims=len(case.sig_shape))
                if self.supports_sync_offset:
                    params["sync_offset"] = case.sync_offset
                ds = ctx.load(self.format, **params)
                assert ds.shape == Shape(case.nav_shape + case.sig_shape, sig_dims=len(case.sig_shape))
                assert ds.dtype.str == case.dtype.str
                assert ds.native_dtype == case.dtype.newbyteorder("=") and ds.native_dtype.isnative
                assert ds.image_count == case.nav_size
                assert ds.sync_offset == case.sync_offset
                # LiberTEM's form: a list of {"name", "value"} dicts, with the frames that
                # sync_offset skips or inserts at either end (the file holds nav_size frames)
                diag = {d["name"]: d["value"] for d in ds.diagnostics}
                assert diag["Number of partitions"] == str(ds.get_num_partitions())
                s = case.sync_offset
                assert diag["Number of frames skipped at the beginning"] == max(0, s)
                assert diag["Number of frames ignored at the end"] == max(0, -s)
                assert diag["Number of blank frames inserted at the beginning"] == max(0, -s)
                assert diag["Number of blank frames inserted at the end"] == max(0, s)
                # positions without a stored frame are invalid; None: all are valid
                has_frame = expected_frames(case.frames, case.nav_size, case.sync_offset)[1]
                mask = ds.get_valid_mask()
                if mask is None:
                    assert has_frame.all(), "get_valid_mask() is None, but frames are missing"
                else:
                    np.testing.assert_array_equal(np.asarray(mask).reshape(-1), has_frame)
                facts = describe(ctx, self.format, params)
            assert facts["format"] == self.format
            assert tuple(facts["nav_shape"]) == case.nav_shape
            assert tuple(facts["sig_shape"]) == case.sig_shape
            assert facts["dtype"] == case.dtype.str
            assert facts["frames"] == facts["frames_in_file"] == case.nav_size
            assert facts["sync_offset"] == case.sync_offset
            assert sum(facts["partition_frames"]) == case.nav_size
            assert facts["partitions"] == len(facts["partition_frames"]) >= 1

        check()

    # -- partitions travel to workers --------------------------------------------------------

    def test_partitions_pickle(self, contexts, serializer):
        """A partition unpickled (as a worker gets it) is the same partition and gives the
        same tiles."""
        dumps, loads = _serializer(serializer)
        ctx = contexts("inline")

        @self._examples(n=max(2, self.max_examples // 2))
        @given(case=self._cases(roi_kinds=("none",)))
        def check(case):
            scheme = case.scheme()
            dest = case.dtype.newbyteorder("=")
            with tempfile.TemporaryDirectory() as tmp:
                ds, _ = self.load(ctx, tmp, case)
                for p in ds.get_partitions():
                    p2 = loads(dumps(p))
                    assert type(p2) is type(p)
                    assert (p2.start, p2.stop, p2.index, p2.sync_offset) == \
                        (p.start, p.stop, p.index, p.sync_offset)
                    assert p2.shape == p.shape and p2.raw_dtype == p.raw_dtype
                    before = list(p.get_tiles(scheme, dest))
                    after = list(p2.get_tiles(scheme, dest))
                    assert len(before) == len(after)
                    for a, b in zip(before, after):
                        assert a.scheme_idx == b.scheme_idx
                        np.testing.assert_array_equal(a.frame_index, b.frame_index)
                        np.testing.assert_array_equal(a.data, b.data)

        check()

    # -- damaged files -----------------------------------------------------------------------

    def _needs_files(self):
        if not self.supports_corrupt:
            pytest.skip(f"{self.format}: no files to corrupt")

    def _assert_names_file(self, err: DataSetError, params: dict):
        names = self.file_names(params)
        assert any(name in str(err) for name in names), f"{names} not named in: {err}"

    def test_corrupt_before_load(self, contexts, io_backend):
        """A damaged file: loading it, or else running on it, raises a DataSetError that names
        the file."""
        self._needs_files()
        from ..udf import SumUDF

        ctx = contexts("inline")
        case = self._fixed_case(io_backend)
        with tempfile.TemporaryDirectory() as tmp:
            params = self.write(Path(tmp), case.data, sig_dims=len(case.sig_shape))
            self.corrupt(params)
            with pytest.raises(DataSetError) as info:
                ds = ctx.load(self.format, **params, **self._backend_kw(io_backend))
                ctx.run_udf(dataset=ds, udf=SumUDF())
            self._assert_names_file(info.value, params)

    def _fixed_case(self, io_backend) -> FormatCase:
        # a data set large enough to truncate in the middle of a frame, in two partitions
        sig = (5, 4, 3, 2, 2)[:self._sig_dims()[0]]
        return FormatCase(nav_shape=(4, 3), sig_shape=sig, dtype=self.dtypes[0], num_partitions=2,
                          io_backend=io_backend, seed=1)

    def _backend_kw(self, io_backend) -> dict:
        return {} if io_backend is None else {"io_backend": io_backend}

    def test_corrupt_after_load(self, contexts, executor, io_backend):
        """A file damaged after loading: the run raises a DataSetError naming the file, on
        every executor, and the Context then runs the next data set right."""
        self._needs_files()
        from ..udf import SumUDF

        ctx = contexts(executor)
        case = self._fixed_case(io_backend)
        with tempfile.TemporaryDirectory() as tmp:
            os.mkdir(os.path.join(tmp, "bad"))
            ds, params = self.load(ctx, os.path.join(tmp, "bad"), case)
            self.corrupt(params)
            with pytest.raises(DataSetError) as info:
                ctx.run_udf(dataset=ds, udf=SumUDF())
            self._assert_names_file(info.value, params)
            os.mkdir(os.path.join(tmp, "good"))
            ds, _ = self.load(ctx, os.path.join(tmp, "good"), case)
            res = ctx.run_udf(dataset=ds, udf=SumUDF())
        wide = np.complex128 if case.dtype.kind == "c" else np.float64
        np.testing.assert_allclose(res["intensity"].data, case.frames.astype(wide).sum(axis=0),
                                   rtol=1e-12)

    # -- nav reshape -------------------------------------------------------------------------

    def test_nav_reshape(self, contexts):
        """``nav_shape=`` of the same size as the written nav gives the same frames in the new
        nav shape, as tiles and as a nav-shaped UDF result."""
        if not self.supports_nav_reshape:
            pytest.skip(f"{self.format}: nav_shape cannot be changed")
        from ..udf import SumSigUDF

        ctx = contexts("inline")

        @st.composite
        def reshaped(draw):
            case = draw(self._cases(roi_kinds=("none",), sync_offset=False))
            n = case.nav_size
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            d = draw(st.sampled_from(divisors))
            new = draw(st.sampled_from([(n,), (d, n // d), (d, 1, n // d)]))
            return case, new

        @self._examples()
        @given(drawn=reshaped())
        def check(drawn):
            case, new_nav = drawn
            with tempfile.TemporaryDirectory() as tmp:
                ds, _ = self.load(ctx, tmp, case, nav_shape=new_nav)
                assert ds.shape == Shape(new_nav + case.sig_shape, sig_dims=len(case.sig_shape))
                out, hits = read_all(ds, scheme=case.scheme())
                assert np.all(hits == 1)
                np.testing.assert_array_equal(out, case.frames)
                res = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
            wide = np.complex128 if case.dtype.kind == "c" else np.float64
            sums = case.frames.astype(wide).reshape(case.nav_size, -1).sum(axis=1)
            np.testing.assert_allclose(res, sums.reshape(new_nav), rtol=1e-12)

        check()
