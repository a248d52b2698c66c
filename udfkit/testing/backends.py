"""The conformance suite of I/O backends: :class:`IOBackendTests`.

An I/O backend (:class:`~udfkit.io.base.IOBackend`) opens the frames a partition needs
(``backend.open(fileset, frames, depth)``) and hands them out a tile's worth at a time
(``source.read(i0, i1) -> (flat, offsets)``). Every backend's test class subclasses
:class:`IOBackendTests`, names the configurations to test, and inherits the checks of that
contract:

* **reads** of a :class:`~udfkit.io.layout.FileSet` equal numpy, frame by frame: several
  files, file headers, per-frame headers and footers, offset tables in any order (HDF5
  chunks), big-endian and other stored dtypes, any sorted selection of frames (ranges,
  strides, random subsets, frames on both sides of a file's end) and any depth;
* **tiles** of data sets (raw, npy, raw split over several files with headers) equal numpy
  for drawn ``sync_offset`` (frames missing at either end), ROI, partitions, tile shapes that
  cut the frame, and dest dtypes (byte swapping and conversion included);
* **UDF results** of a run with the backend equal numpy;
* **empty reads**: no frames to open, an all-false ROI;
* **many files in one partition**, tiles across their boundaries;
* a **missing** or **truncated** file is an error that names it (never a crash or wrong
  numbers), whether it changed before the run or while the source was open;
* the backend **pickles** (it travels with every partition to the workers).

Examples are drawn with hypothesis, few and tiny, so the suite runs for every backend in the
default test run; :func:`udfkit.testing.profiles.examples` scales them under the ``nightly``
profile. Values are small integers (quarter steps for floats), so comparisons are exact.

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

from ..errors import DataSetError, IOBackendError
from ..io.base import IOBackend
from ..io.layout import FileLayout, FileSet
from ..io.tiling import TilingScheme
from ..udf import UDF, SumSigUDF, SumUDF
from .profiles import examples
from .tiles import expected_frames, read_all

__all__ = ["IOBackendTests", "READ_ERRORS", "FrameTotals", "stored_values", "write_frames",
           "write_fileset", "direct_io_refusal"]

#: what a missing or truncated file may raise: a :class:`~udfkit.errors.DataSetError` (the
#: file no longer matches the load) or an :class:`~udfkit.errors.IOBackendError` (the read
#: failed); :class:`~udfkit.errors.FileChangedError` is both
READ_ERRORS = (DataSetError, IOBackendError)


def stored_values(dtype, shape, rng: np.random.Generator) -> np.ndarray:
    """Random values of ``dtype`` that survive every conversion exactly.

    Integers within ±1000 (clipped to the dtype), multiples of 1/4 for floats, Gaussian
    integers for complex dtypes: float32, float64 and every integer dtype of the same sign
    hold them exactly, so a tile in another dtype compares equal to numpy's cast.

    Examples
    --------
    >>> v = stored_values(">f4", (3, 4), np.random.default_rng(0))
    >>> v.dtype.str, bool(np.all(v * 4 == np.round(v * 4)))
    ('>f4', True)
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.integers(-50, 50, shape) + 1j * rng.integers(-50, 50, shape)).astype(dtype)
    if dtype.kind == "f":
        return (rng.integers(-400, 400, shape) / 4).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)


def _junk(rng, n: int) -> bytes:
    # random bytes in headers and footers: a reader that takes them for data gives wrong numbers
    return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def write_frames(directory, fmt: str, frames: np.ndarray, *, n_files: int = 2, file_header: int = 0,
                 frame_header: int = 0, frame_footer: int = 0, seed: int = 0) -> dict:
    """Write ``frames`` ``(image_count, *sig)`` as a data set; return the ``ctx.load`` kwargs.

    Parameters
    ----------
    directory : path
        Where the files go.
    fmt : {"raw", "npy", "multi-raw"}
        One raw file, one ``.npy`` file, or ``n_files`` raw files that hold consecutive
        ranges of the frames, each with ``file_header`` bytes before its first frame and
        ``frame_header`` / ``frame_footer`` bytes around every frame (random junk).

    Returns
    -------
    dict
        ``filetype`` plus the parameters of ``ctx.load(filetype, ...)`` (without
        ``nav_shape``).

    Examples
    --------
    >>> d = tempfile.mkdtemp()
    >>> kw = write_frames(d, "multi-raw", np.zeros((5, 2, 2), "<u2"), n_files=2, frame_header=3)
    >>> kw["filetype"], [os.path.basename(p) for p in kw["path"]], kw["frame_header_bytes"]
    ('raw', ['part0.bin', 'part1.bin'], 3)
    """
    directory = Path(directory)
    sig = frames.shape[1:]
    if fmt == "npy":
        path = directory / "data.npy"
        np.save(path, frames)
        return dict(filetype="npy", path=str(path), sig_shape=sig)
    if fmt == "raw":
        path = directory / "data.raw"
        frames.tofile(path)
        return dict(filetype="raw", path=str(path), dtype=frames.dtype.str, sig_shape=sig)
    if fmt != "multi-raw":
        raise ValueError(f"fmt: expected 'raw', 'npy' or 'multi-raw', got {fmt!r}")
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, frames.shape[0], n_files + 1).astype(int)
    paths = []
    for i in range(n_files):
        path = directory / f"part{i}.bin"
        with open(path, "wb") as f:
            f.write(_junk(rng, file_header))
            for frame in frames[bounds[i]:bounds[i + 1]]:
                f.write(_junk(rng, frame_header))
                f.write(frame.tobytes())
                f.write(_junk(rng, frame_footer))
        paths.append(str(path))
    return dict(filetype="raw", path=paths, dtype=frames.dtype.str, sig_shape=sig,
                file_header_bytes=file_header, frame_header_bytes=frame_header,
                frame_footer_bytes=frame_footer)


def write_fileset(directory, frames: np.ndarray, counts, *, file_header: int = 0,
                  frame_header: int = 0, frame_footer: int = 0, tables=(), seed: int = 0) -> FileSet:
    """Write ``frames`` into ``len(counts)`` files of ``counts[i]`` frames; the FileSet.

    Each file has ``file_header`` junk bytes, then its frames with ``frame_header`` and
    ``frame_footer`` junk bytes around each, except the files whose index is in ``tables``:
    those store their frames in a shuffled order, separated by junk of drawn lengths, and
    describe them by an offset table (as HDF5 chunks are).

    Examples
    --------
    >>> d = tempfile.mkdtemp()
    >>> frames = np.arange(12, dtype=">i4").reshape(6, 2)
    >>> fs = write_fileset(d, frames, [2, 4], frame_header=1, tables=[1])
    >>> fs.image_count, fs.files[0].frame_offsets is None, fs.files[1].frame_offsets.shape
    (6, True, (4,))
    """
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    sig = frames.shape[1:]
    files = []
    start = 0
    for i, count in enumerate(counts):
        path = str(directory / f"file{i}.bin")
        mine = frames[start:start + count]
        start += count
        with open(path, "wb") as f:
            f.write(_junk(rng, file_header))
            if i in tables:
                offsets = np.zeros(count, np.int64)
                at = file_header
                for k in rng.permutation(count):
                    gap = int(rng.integers(0, 40))
                    f.write(_junk(rng, gap))
                    at += gap
                    offsets[k] = at
                    f.write(mine[k].tobytes())
                    at += mine[k].nbytes
                files.append(FileLayout(path, 0, frames.dtype, sig, count, frame_offsets=offsets))
                continue
            for frame in mine:
                f.write(_junk(rng, frame_header))
                f.write(frame.tobytes())
                f.write(_junk(rng, frame_footer))
        files.append(FileLayout(path, file_header, frames.dtype, sig, count,
                                frame_header_bytes=frame_header, frame_footer_bytes=frame_footer))
    return FileSet(files)


def direct_io_refusal(directory) -> str | None:
    """Why files in ``directory`` cannot be opened with ``O_DIRECT``, or None if they can.

    Examples
    --------
    >>> isinstance(direct_io_refusal(tempfile.mkdtemp()), (str, type(None)))
    True
    """
    flag = getattr(os, "O_DIRECT", None)
    if flag is None:  # pragma: no cover - macOS, Windows
        return "this operating system has no O_DIRECT"
    probe = os.path.join(os.fspath(directory), ".udfkit-direct-probe")
    with open(probe, "wb") as f:
        f.write(b"\0" * 4096)
    try:
        os.close(os.open(probe, os.O_RDONLY | flag))
    except OSError as e:
        return f"the file system of {directory} refuses O_DIRECT: {e}"
    finally:
        os.unlink(probe)
    return None


# -- drawn cases -----------------------------------------------------------------------------

@st.composite
def _frame_selections(draw, image_count: int):
    """Sorted frame numbers: everything, a range with a stride, a random subset, or none."""
    kind = draw(st.sampled_from(["all", "range", "range", "subset", "single", "none"]))
    if kind == "all":
        return np.arange(image_count, dtype=np.int64)
    if kind == "none":
        return np.zeros(0, np.int64)
    if kind == "single":
        return np.array([draw(st.integers(0, image_count - 1))], np.int64)
    if kind == "range":
        lo = draw(st.integers(0, image_count - 1))
        hi = draw(st.integers(lo + 1, image_count))
        return np.arange(lo, hi, draw(st.integers(1, 4)), dtype=np.int64)
    picked = draw(st.lists(st.booleans(), min_size=image_count, max_size=image_count))
    return np.flatnonzero(picked).astype(np.int64)


@st.composite
def _source_cases(draw, dtypes):
    """Everything :meth:`IOBackendTests.test_reads_equal_numpy` needs to write and read."""
    counts = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    image_count = sum(counts)
    sig = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=2)))
    return dict(
        dtype=draw(st.sampled_from(dtypes)), sig=sig, counts=counts,
        file_header=draw(st.sampled_from([0, 0, 3, 512, 4096])),
        frame_header=draw(st.sampled_from([0, 0, 1, 8, 100])),
        frame_footer=draw(st.sampled_from([0, 0, 2, 64])),
        tables=draw(st.sets(st.integers(0, len(counts) - 1), max_size=len(counts))),
        frames=draw(_frame_selections(image_count)), depth=draw(st.integers(1, 7)),
        seed=draw(st.integers(0, 2**16)))


@st.composite
def _dataset_cases(draw, dtypes, formats, max_partitions=4):
    """Everything :meth:`IOBackendTests.test_tiles_equal_numpy` needs."""
    fmt = draw(st.sampled_from(formats))
    sig = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=2)))
    nav = draw(st.integers(1, 40))
    extra = draw(st.integers(0, 3))  # frames in the file beyond nav
    sync = draw(st.integers(-(nav - 1), nav + extra - 1))
    seed = draw(st.integers(0, 2**16))
    roi_kind = draw(st.sampled_from(["none", "random", "sparse", "empty"]))
    roi = None
    if roi_kind != "none":
        density = {"random": 0.6, "sparse": 0.1, "empty": 0.0}[roi_kind]
        roi = np.random.default_rng(seed).random(nav) < density
    headers = {}
    if fmt == "multi-raw":
        headers = dict(n_files=draw(st.integers(1, 4)),
                       file_header=draw(st.sampled_from([0, 3, 16, 4096])),
                       frame_header=draw(st.sampled_from([0, 1, 8, 100])),
                       frame_footer=draw(st.sampled_from([0, 2, 64])))
    return dict(dtype=draw(st.sampled_from(dtypes)), fmt=fmt, sig=sig, nav=nav, extra=extra,
                sync=sync, roi=roi, headers=headers, depth=draw(st.integers(1, 7)),
                split=draw(st.booleans()) and sig[0] > 1, seed=seed,
                num_partitions=draw(st.integers(1, max_partitions)),
                dest=draw(st.sampled_from(["native", "float32", "float64"])))


class FrameTotals(UDF):
    """Per-frame sums with a Python ``process_tile``: sees exactly the tiles a backend makes."""

    def get_result_buffers(self):
        return {"total": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        self.results.total[:] += tile.reshape(tile.shape[0], -1).sum(axis=1)


class IOBackendTests:
    """Conformance tests every I/O backend passes; subclass it once per backend.

    The subclass is the test class (name it ``Test...``); this base is not collected because
    its name does not start with ``Test``. Every test runs once per entry of
    :attr:`variants`, so a failure names the configuration.

    Attributes
    ----------
    variants : dict
        ``{name: IOBackend instance}``: the configurations to test (small buffers make a
        partition take many batches; read-ahead on and off).
    dtypes : tuple of str
        Stored dtypes to draw from (byte order included).
    udf_dtypes : tuple of str
        Stored dtypes of the UDF test, which runs once per dtype and format.
    formats : tuple of str
        Data set formats of the tile and UDF tests: ``"raw"``, ``"npy"``, ``"multi-raw"``
        (see :func:`write_frames`).
    max_examples : int
        Hypothesis examples per test and variant (default 30), scaled by the active
        hypothesis profile.

    Examples
    --------
    The test class of the ``buffered`` backend, with a small buffer and with read-ahead:

    >>> from udfkit.io.backends.buffered import BufferedBackend
    >>> class TestBuffered(IOBackendTests):
    ...     variants = {"small": BufferedBackend(buffer_size=3000),
    ...                 "readahead": BufferedBackend(buffer_size=5000, readahead=True)}
    """

    variants: ClassVar[dict]
    dtypes: ClassVar[tuple] = ("uint8", "uint16", ">u2", "int32", ">i4", "float32", ">f4",
                               "float64", ">f8", "complex64", ">c8")
    udf_dtypes: ClassVar[tuple] = ("uint16", ">u2", "float32", ">f8")
    formats: ClassVar[tuple] = ("raw", "npy", "multi-raw")
    max_examples: ClassVar[int] = 30

    # -- what a backend's test class may override --------------------------------------------

    def usable_in(self, directory) -> str | None:
        """Why the backend cannot read files in ``directory`` (the test is skipped with that
        reason), or None. The default: every directory works."""
        return None

    # -- plumbing ------------------------------------------------------------------------------

    def pytest_generate_tests(self, metafunc):
        """Parametrize by variant (and format and dtype where a test takes them), so that a
        failure names its case."""
        if "variant" in metafunc.fixturenames:
            names = list(self.variants)
            metafunc.parametrize("variant", names, ids=names)
        if "fmt" in metafunc.fixturenames:
            metafunc.parametrize("fmt", list(self.formats), ids=list(self.formats))
        if "udf_dtype" in metafunc.fixturenames:
            metafunc.parametrize("udf_dtype", list(self.udf_dtypes), ids=list(self.udf_dtypes))

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls):
        """An inline Context for the class (a classmethod: class-scoped fixtures run once per
        class, not per test instance)."""
        from ..api import Context

        with Context.make_with("inline") as ctx:
            yield ctx

    def backend(self, variant: str) -> IOBackend:
        """The backend of ``variant``, as a worker gets it (pickled and unpickled)."""
        return pickle.loads(pickle.dumps(self.variants[variant]))

    def _workdir(self, tmp_path) -> Path:
        reason = self.usable_in(tmp_path)
        if reason is not None:
            pytest.skip(reason)
        return Path(tmp_path)

    def _settings(self, n: int | None = None):
        return settings(max_examples=examples(self.max_examples if n is None else n), deadline=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

    def _load(self, ctx, variant, load: dict, **kwargs):
        load = dict(load)
        filetype = load.pop("filetype")
        return ctx.load(filetype, io_backend=self.backend(variant), **load, **kwargs)

    # -- the backend itself --------------------------------------------------------------------

    def test_backend_travels(self, variant):
        """The backend pickles with the stdlib and cloudpickle (partitions carry it to the
        workers) and keeps its parameters; its capabilities have the documented types."""
        import cloudpickle

        backend = self.variants[variant]
        assert isinstance(backend, IOBackend)
        for copy in (pickle.loads(pickle.dumps(backend)),
                     cloudpickle.loads(cloudpickle.dumps(backend))):
            assert type(copy) is type(backend)
            assert repr(copy) == repr(backend)
            assert vars(copy) == vars(backend)
        assert isinstance(backend.supports_zero_copy, bool)
        block = backend.block_bytes
        assert block is None or (isinstance(block, int) and block > 0), block
        assert isinstance(backend.name, str) and backend.name != "?"

    # -- reads -------------------------------------------------------------------------------

    def test_reads_equal_numpy(self, variant, tmp_path):
        """``open(fileset, frames, depth)`` then ``read(i0, i1)`` per tile gives each selected
        frame as numpy has it, in the stored dtype: several files, headers, footers, offset
        tables in any order, any sorted selection, any depth."""
        workdir = self._workdir(tmp_path)

        @self._settings()
        @given(case=_source_cases(self.dtypes))
        def check(case):
            rng = np.random.default_rng(case["seed"])
            image_count = sum(case["counts"])
            frames = stored_values(case["dtype"], (image_count,) + case["sig"], rng)
            with tempfile.TemporaryDirectory(dir=workdir) as d:
                fileset = write_fileset(d, frames, case["counts"], file_header=case["file_header"],
                                        frame_header=case["frame_header"],
                                        frame_footer=case["frame_footer"], tables=case["tables"],
                                        seed=case["seed"])
                self._check_reads(self.backend(variant), fileset, case["frames"], case["depth"],
                                  frames)

        check()

    @staticmethod
    def _check_reads(backend, fileset, wanted, depth, frames):
        items = prod(frames.shape[1:])
        with backend.open(fileset, wanted, depth) as source:
            for i0 in range(0, len(wanted), depth):
                i1 = min(i0 + depth, len(wanted))
                flat, offsets = source.read(i0, i1)
                assert flat.ndim == 1 and flat.dtype == fileset.dtype, (flat.shape, flat.dtype)
                offsets = np.asarray(offsets)
                assert offsets.shape == (i1 - i0,), offsets.shape
                for k, frame in enumerate(wanted[i0:i1]):
                    got = flat[int(offsets[k]):int(offsets[k]) + items]
                    np.testing.assert_array_equal(got, frames[frame].reshape(-1),
                                                  err_msg=f"frame {frame} (tile at {i0})")

    def test_tiles_equal_numpy(self, variant, ctx, tmp_path):
        """Every partition's tiles equal numpy: formats, stored dtypes, ``sync_offset`` with
        frames missing at either end, ROI, partitions, tile shapes and dest dtypes drawn."""
        workdir = self._workdir(tmp_path)

        @self._settings()
        @given(case=_dataset_cases(self.dtypes, self.formats))
        def check(case):
            rng = np.random.default_rng(case["seed"])
            image_count = case["nav"] + case["extra"]
            frames = stored_values(case["dtype"], (image_count,) + case["sig"], rng)
            ref, processed = expected_frames(frames, case["nav"], case["sync"], case["roi"])
            ref = ref.astype(ref.dtype.newbyteorder("="))
            dest = ref.dtype if case["dest"] == "native" else np.result_type(case["dest"], ref.dtype)
            sig = case["sig"]
            tile_sig = (max(1, sig[0] // 2),) + sig[1:] if case["split"] else sig
            scheme = TilingScheme.make(sig, tile_sig, case["depth"], "tile")
            with tempfile.TemporaryDirectory(dir=workdir) as d:
                load = write_frames(d, case["fmt"], frames, seed=case["seed"], **case["headers"])
                ds = self._load(ctx, variant, load, nav_shape=(case["nav"],),
                                sync_offset=case["sync"], num_partitions=case["num_partitions"],
                                allow_partial=image_count - case["sync"] < case["nav"])

                def read_only(p, t):
                    # one tile is shared by all UDFs of a run: none may change it
                    assert not t.data.flags.writeable

                out, hits = read_all(ds, dest, scheme, case["roi"], check_tile=read_only)
            assert np.all(hits[processed] == 1), "frames not delivered exactly once"
            assert np.all(hits[~processed] == 0), "frames delivered outside the ROI or the file"
            np.testing.assert_array_equal(out[processed], ref[processed].astype(dest))

        check()

    def test_udf_results_equal_numpy(self, variant, ctx, tmp_path, fmt, udf_dtype):
        """A run with the backend (ROI, ``sync_offset``, three partitions, headers) gives
        numpy's sums, through a Python ``process_tile`` that sees the backend's tiles too."""
        workdir = self._workdir(tmp_path)
        rng = np.random.default_rng(1)
        nav, sig = (5, 7), (12, 10)
        frames = stored_values(udf_dtype, (prod(nav) + 2,) + sig, rng)
        load = write_frames(workdir, fmt, frames, n_files=3, file_header=10, frame_header=6,
                            frame_footer=2)
        roi = rng.random(nav) < 0.7
        ds = self._load(ctx, variant, load, nav_shape=nav, sync_offset=1, num_partitions=3)
        res = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF(), FrameTotals()], roi=roi)
        ref = frames[1:1 + prod(nav)].astype(np.float64).reshape(nav + sig)
        np.testing.assert_allclose(res[0]["intensity"].data, ref[roi].sum(axis=0), rtol=1e-12)
        sums = ref.sum(axis=(2, 3))
        np.testing.assert_allclose(res[1]["intensity"].data[roi], sums[roi], rtol=1e-12)
        np.testing.assert_allclose(res[2]["total"].data[roi], sums[roi], rtol=1e-5)
        assert np.isnan(res[1]["intensity"].data[~roi]).all()

    # -- edge cases --------------------------------------------------------------------------

    def test_empty_reads(self, variant, ctx, tmp_path):
        """Opening no frames reads nothing and closes cleanly; a run whose ROI selects nothing
        gives zero sums and no valid position."""
        workdir = self._workdir(tmp_path)
        frames = stored_values("uint16", (6, 4, 4), np.random.default_rng(2))
        fileset = write_fileset(workdir, frames, [4, 2])
        with self.backend(variant).open(fileset, np.zeros(0, np.int64), 3):
            pass
        load = write_frames(workdir, "raw", frames)
        ds = self._load(ctx, variant, load, nav_shape=(6,), num_partitions=2)
        out, hits = read_all(ds, roi=np.zeros(6, bool))
        assert not hits.any()
        res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()], roi=np.zeros(6, bool))
        np.testing.assert_array_equal(res_sum["intensity"].data, 0)
        assert not res_sig["intensity"].valid_mask.any()

    def test_many_files_in_one_partition(self, variant, ctx, tmp_path):
        """Twelve files of one to three frames in one partition: tiles deeper than a file
        span several files and equal numpy, for every depth up to a whole partition."""
        workdir = self._workdir(tmp_path)
        rng = np.random.default_rng(3)
        counts = [1, 3, 2, 1, 1, 3, 2, 2, 1, 3, 1, 2]
        frames = stored_values(">u2", (sum(counts), 3, 5), rng)
        fileset = write_fileset(workdir, frames, counts, file_header=7, frame_header=3, tables=[5])
        wanted = np.arange(sum(counts), dtype=np.int64)
        for depth in (1, 2, 5, len(wanted)):
            self._check_reads(self.backend(variant), fileset, wanted, depth, frames)
        ds = self._load(ctx, variant, write_frames(workdir, "multi-raw", frames, n_files=12,
                                                   frame_header=5),
                        nav_shape=(len(wanted),), num_partitions=1)
        scheme = TilingScheme.make((3, 5), (2, 5), 4, "tile")
        out, hits = read_all(ds, "float32", scheme)
        assert np.all(hits == 1)
        np.testing.assert_array_equal(out, frames.astype(np.float32))

    # -- files that are missing or too short -------------------------------------------------

    def _assert_names(self, err, path):
        assert os.path.basename(path) in str(err), f"{os.path.basename(path)!r} not named in: {err}"

    def test_missing_file_is_an_error_naming_it(self, variant, ctx, tmp_path):
        """A file of the data set removed after loading: opening its frames, and a run, raise
        an error that names it; the Context runs the next data set right."""
        workdir = self._workdir(tmp_path)
        frames = stored_values("float32", (9, 4, 6), np.random.default_rng(4))
        (workdir / "gone").mkdir()
        load = write_frames(workdir / "gone", "multi-raw", frames, n_files=3, file_header=16)
        ds = self._load(ctx, variant, load, nav_shape=(3, 3), num_partitions=2)
        fileset = write_fileset(workdir, frames, [3, 3, 3])
        missing = load["path"][1]
        os.unlink(missing)
        os.unlink(fileset.files[1].path)
        with pytest.raises(READ_ERRORS) as info:
            with self.backend(variant).open(fileset, np.arange(9), 2) as source:
                source.read(0, 2)
        self._assert_names(info.value, fileset.files[1].path)
        with pytest.raises(READ_ERRORS) as info:
            ctx.run_udf(dataset=ds, udf=SumUDF())
        self._assert_names(info.value, missing)
        (workdir / "good").mkdir()
        good = self._load(ctx, variant, write_frames(workdir / "good", "raw", frames), nav_shape=(9,))
        np.testing.assert_array_equal(ctx.run_udf(dataset=good, udf=SumUDF())["intensity"].data,
                                      frames.sum(axis=0, dtype=np.float64))

    def test_truncated_file_is_an_error_naming_it(self, variant, ctx, tmp_path):
        """A file truncated after loading (in the middle of a frame): the run raises an error
        that names it and says it was truncated."""
        workdir = self._workdir(tmp_path)
        frames = stored_values("uint16", (40, 32, 32), np.random.default_rng(5))
        load = write_frames(workdir, "raw", frames)
        ds = self._load(ctx, variant, load, nav_shape=(40,), num_partitions=2)
        os.truncate(load["path"], 10 * frames[0].nbytes + 100)
        with pytest.raises(READ_ERRORS, match="truncated") as info:
            ctx.run_udf(dataset=ds, udf=SumUDF())
        self._assert_names(info.value, load["path"])

    def test_truncated_while_open_is_an_error_naming_it(self, variant, tmp_path):
        """A file that shrinks after the source was opened (before the first read): the reads
        raise an error that names it instead of returning short or stale frames (or, for a
        mapping, crashing the process with SIGBUS)."""
        workdir = self._workdir(tmp_path)
        frames = stored_values("int32", (30, 16, 16), np.random.default_rng(6))
        fileset = write_fileset(workdir, frames, [10, 20], file_header=64)
        wanted = np.arange(30, dtype=np.int64)
        with self.backend(variant).open(fileset, wanted, 4) as source:
            path = fileset.files[1].path
            os.truncate(path, os.path.getsize(path) // 2)
            with pytest.raises(READ_ERRORS) as info:
                for i0 in range(0, 30, 4):
                    source.read(i0, min(i0 + 4, 30))
        self._assert_names(info.value, path)
