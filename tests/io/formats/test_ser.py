"""The ser format (TIA): the conformance suite on synthetic images and spectra of every TIA data
type with unevenly spaced elements (rows flipped, as TIA shows them, and in file order), the
real sample .ser/.emi and synthetic maps, series and spectra checked against rsciio.tia,
the stack format over ser members, and bad input (element headers that disagree, truncation,
missing or several .ser for an .emi, headers that do not parse)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from rsciio.tia import file_reader

from udfkit import Context
from udfkit.cli.info import describe
from udfkit.errors import DataSetError
from udfkit.io.formats import detect_format
from udfkit.io.formats.ser import write_ser
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")
TIA_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64",
              "complex64", "complex128")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


def uneven_gaps(n, seed=0):
    """Tag bytes after each element: 0 to 40, so that elements are not evenly spaced."""
    return np.random.default_rng(seed).integers(0, 41, size=n)


class TestSER(DataSetTests):
    format = "ser"
    # the worker executors (each class starts its own processes and dask cluster, ~1 min on a
    # 2-core machine) run in TestSERWorkers, in the slow run
    executors = ("inline", "threads")
    dtypes = TIA_DTYPES
    io_backends = BACKENDS
    sig_dims = (1, 2)
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:-sig_dims]
        frames = data.reshape((-1,) + data.shape[-sig_dims:])
        if sig_dims == 2:
            frames = frames[:, ::-1]  # TIA stores the bottom row first; udfkit flips it back
        path = tmp_path / "data_1.ser"
        # TIA lists the fastest axis first
        write_ser(path, frames, nav_dims=tuple(reversed(nav)), gaps=uneven_gaps(len(frames)))
        params = dict(path=str(path))
        if 1 in nav and len(nav) > 1:
            params["nav_shape"] = nav  # size-1 dimensions are dropped from the header's shape
        return params


@pytest.mark.slow
class TestSERWorkers(TestSER):
    """The conformance suite on the processes and dask executors."""

    executors = ("processes", "dask")
    max_examples = 3


class TestSERFileOrder(DataSetTests):
    """``flip_rows=False``: rows as stored, through the plain file read path."""

    format = "ser"
    dtypes = ("uint16", "float32")
    io_backends = BACKENDS
    executors = ("inline", "threads")
    max_examples = 3

    def write(self, tmp_path, data, *, sig_dims):
        frames = data.reshape((-1,) + data.shape[-2:])
        path = tmp_path / "plain_1.ser"
        write_ser(path, frames, gaps=uneven_gaps(len(frames), 1), version=0x0220)
        return dict(path=str(path), nav_shape=data.shape[:-2], flip_rows=False)


# -- the real file and rosettasciio -------------------------------------------------------------

@pytest.mark.parametrize("name", ["64x64x5_TEM_preview_1.ser", "64x64x5_TEM_preview.emi"])
@pytest.mark.parametrize("io_backend", BACKENDS)
def test_sample_file_equals_rsciio(ctx, name, io_backend):
    path = fixture("ser", name)
    ref = file_reader(path)[0]["data"]
    ds = ctx.load("ser", path=path, io_backend=io_backend)
    assert ds.shape.to_tuple() == ref.shape == (5, 64, 64) and ds.dtype == ref.dtype
    out, hits = read_all(ds)
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, ref)
    total, sums = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    np.testing.assert_allclose(total["intensity"].data, ref.astype(np.float64).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sums["intensity"].data, ref.astype(np.float64).sum(axis=(1, 2)),
                               rtol=1e-6)


def test_sample_file_metadata(ctx):
    path = fixture("ser", "64x64x5_TEM_preview_1.ser")
    meta = file_reader(path.replace("_1.ser", ".emi"))[0]["original_metadata"]
    ds = ctx.load("ser", path=path)
    info = ds.layout_info()
    assert info["elements"] == "2D images" and info["valid_elements"] == info["total_elements"] == 5
    assert info["flip_rows"] is True and info["element_header_bytes"] == 50
    emi = info["emi"]
    assert os.path.basename(emi["path"]) == "64x64x5_TEM_preview.emi"
    assert emi["ExperimentalDescription"]["High tension_kV"] == "200"
    want = meta["ObjectInfo"]["ExperimentalDescription"]
    assert float(emi["ExperimentalDescription"]["Magnification_x"]) == want["Magnification_x"]
    assert emi["ExperimentalDescription"]["Microscope"] == want["Microscope"]
    hdr = meta["ser_header_parameters"]
    assert info["calibration"]["CalibrationDeltaX"] == pytest.approx(hdr["CalibrationDeltaX"][0])


def test_file_order(ctx):
    path = fixture("ser", "64x64x5_TEM_preview_1.ser")
    ref = file_reader(path)[0]["data"]
    ds = ctx.load("ser", path=path, flip_rows=False, sig_shape=(4096,))
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, ref[:, ::-1].reshape(5, 4096))


def test_ser_alone(ctx, tmp_path):
    """Without its .emi the .ser is read alone (it holds all the data)."""
    data = np.arange(3 * 4 * 5, dtype="uint16").reshape(3, 4, 5)
    write_ser(tmp_path / "x_1.ser", data)
    ds = ctx.load("ser", path=str(tmp_path / "x_1.ser"))
    assert ds.layout_info()["emi"] is None
    np.testing.assert_array_equal(read_all(ds)[0], data[:, ::-1])


def _map(tmp_path, name, *, rows=3, cols=5, x_fastest=True, with_positions=True, dtype="int16",
         valid=None, **kw):
    frames = np.random.default_rng(0).integers(-90, 90, (rows * cols, 4, 6)).astype(dtype)
    if x_fastest:
        pos = [(c * 1e-9, r * 1e-9) for r in range(rows) for c in range(cols)]
        dims = (cols, rows)
    else:
        pos = [(c * 1e-9, r * 1e-9) for c in range(cols) for r in range(rows)]
        dims = (rows, cols)
    n = len(frames) if valid is None else valid
    path = str(tmp_path / name)
    write_ser(path, frames[:n], nav_dims=dims, positions=pos if with_positions else None,
              valid=valid, **kw)
    return path, frames[:n]


@pytest.mark.parametrize("x_fastest", [True, False])
def test_map_equals_rsciio(ctx, tmp_path, x_fastest):
    """A 2D scan with stage positions in the tags: rsciio's shape and values, whichever axis
    the scan ran along first."""
    path, _ = _map(tmp_path, "map_1.ser", x_fastest=x_fastest, gaps=uneven_gaps(15) + 24)
    ref = file_reader(path)[0]["data"]
    ds = ctx.load("ser", path=path, num_partitions=2)
    assert ds.shape.to_tuple() == ref.shape == (3, 5, 4, 6)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)
    sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    np.testing.assert_array_equal(sums, ref.sum(axis=(2, 3), dtype=np.float64))


def test_map_without_positions(ctx, tmp_path):
    """Without positions the first dimension record is the fastest axis, as in ncempy and
    LiberTEM (rsciio then takes it as the slowest); the frames are the same."""
    path, frames = _map(tmp_path, "np_1.ser", with_positions=False)
    ds = ctx.load("ser", path=path)
    assert ds.shape.nav.to_tuple() == (3, 5)
    ref = file_reader(path)[0]["data"]
    assert ref.shape[:2] == (5, 3)
    np.testing.assert_array_equal(read_all(ds)[0], ref.reshape(15, 4, 6))
    np.testing.assert_array_equal(read_all(ds)[0], frames[:, ::-1])


@pytest.mark.parametrize("dtype", TIA_DTYPES)
def test_spectra_equal_rsciio(ctx, tmp_path, dtype):
    """1D elements (spectra) of every TIA data type, 8-byte offsets, uneven spacing."""
    rng = np.random.default_rng(5)
    spectra = (rng.integers(0, 100, (12, 37)) * (1 + 1j if dtype.startswith("complex") else 1))
    spectra = spectra.astype(dtype)
    path = str(tmp_path / f"eels_{dtype}_1.ser")
    write_ser(path, spectra, nav_dims=(4, 3), version=0x0220, gaps=uneven_gaps(12, 2))
    ref = file_reader(path)[0]["data"]
    ds = ctx.load("ser", path=path)
    assert ds.shape.to_tuple() == (3, 4, 37) and ds.dtype == np.dtype(dtype)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, ref.reshape(12, 37))
    assert ds.layout_info()["frame_stride"] is None  # not evenly spaced


def test_aborted_series_and_map(ctx, tmp_path):
    series = np.arange(11 * 3 * 2, dtype="float32").reshape(11, 3, 2)
    write_ser(tmp_path / "s_1.ser", series, nav_dims=(20,), valid=11)
    ref = file_reader(str(tmp_path / "s_1.ser"))[0]["data"]
    ds = ctx.load("ser", path=str(tmp_path / "s_1.ser"))
    assert ds.shape.to_tuple() == ref.shape == (11, 3, 2)
    np.testing.assert_array_equal(read_all(ds)[0], ref)
    # a map keeps its shape; the positions without a frame are invalid
    path, frames = _map(tmp_path, "m_1.ser", valid=11)
    ds = ctx.load("ser", path=path)
    assert ds.shape.nav.to_tuple() == (3, 5)
    np.testing.assert_array_equal(ds.get_valid_mask(), np.arange(15) < 11)
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    flat = res.data.reshape(-1)
    np.testing.assert_array_equal(flat[:11], frames.sum(axis=(1, 2), dtype=np.float64))
    assert np.isnan(flat[11:]).all()


def test_stack_of_ser(ctx, tmp_path):
    """The stack format reads its members' sources directly: rows are flipped there too."""
    a = np.arange(4 * 3 * 5, dtype="uint16").reshape(4, 3, 5)
    b = a[::-1] + 1000
    write_ser(tmp_path / "a_1.ser", a, gaps=uneven_gaps(4))
    write_ser(tmp_path / "b_1.ser", b)
    ds = ctx.load("stack", datasets=[ctx.load("ser", path=str(tmp_path / "a_1.ser")),
                                     {"filetype": "ser", "path": str(tmp_path / "b_1.ser")}])
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, np.concatenate([a, b])[:, ::-1])
    total = ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data
    np.testing.assert_array_equal(total, np.concatenate([a, b])[:, ::-1].sum(axis=0, dtype=np.float64))


def test_detection_and_info(ctx, tmp_path):
    path = fixture("ser", "64x64x5_TEM_preview_1.ser")
    assert detect_format({"path": path}) == "ser"
    assert detect_format({"path": fixture("ser", "64x64x5_TEM_preview.emi")}) == "ser"
    facts = describe(ctx, "auto", {"path": path})
    assert facts["format"] == "ser" and facts["nav_shape"] == [5] and facts["sig_shape"] == [64, 64]
    assert facts["layout"]["first_frame_offset"] == 158


# -- bad input ----------------------------------------------------------------------------------

def _patch(path, offset, value, dtype):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.array([value], dtype).tobytes())


def _element_offset(path, k):
    from udfkit.io.formats._ser_file import read_ser_header

    return int(read_ser_header(path)["data_offsets"][k])


def test_element_header_disagrees(ctx, tmp_path):
    path, _ = _map(tmp_path, "bad_1.ser")
    _patch(path, _element_offset(path, 7) + 40, 7, "<u2")  # DataType: float32 instead of int16
    with pytest.raises(DataSetError, match=r"bad_1\.ser.*element 7 disagrees with the first element: "
                                           r"DataType 7, expected 5"):
        ctx.load("ser", path=path)
    path, _ = _map(tmp_path, "size_1.ser")
    _patch(path, _element_offset(path, 2) + 46, 9, "<u4")  # ArraySizeY
    with pytest.raises(DataSetError, match=r"size_1\.ser.*element 2 disagrees.*ArraySizeY 9, "
                                           r"expected 4"):
        ctx.load("ser", path=path)


def test_truncated(ctx, tmp_path):
    path, _ = _map(tmp_path, "cut_1.ser", gaps=[0] * 15)
    os.truncate(path, os.path.getsize(path) - 5)
    with pytest.raises(DataSetError, match=r"cut_1\.ser' is truncated: element 14 needs bytes"):
        ctx.load("ser", path=path)
    os.truncate(path, 200)
    with pytest.raises(DataSetError, match=r"cut_1\.ser' is truncated"):
        ctx.load("ser", path=path)


def test_not_a_ser(ctx, tmp_path):
    path, _ = _map(tmp_path, "magic_1.ser")
    _patch(path, 2, 0x0198, "<u2")
    with pytest.raises(DataSetError, match=r"magic_1\.ser' is not a TIA series file.*0x0197.*0x0198"):
        ctx.load("ser", path=path)
    path, _ = _map(tmp_path, "kind_1.ser")
    _patch(path, 6, 0x4121, "<u4")
    with pytest.raises(DataSetError, match=r"kind_1\.ser.*data type id 0x4121 is not read"):
        ctx.load("ser", path=path)
    short = tmp_path / "short_1.ser"
    short.write_bytes(b"II\x97\x01\x10\x02")
    with pytest.raises(DataSetError, match=r"short_1\.ser.*header does not parse: it needs 22 bytes"):
        ctx.load("ser", path=str(short))


def test_unknown_data_type(ctx, tmp_path):
    path, _ = _map(tmp_path, "dt_1.ser")
    for k in range(15):
        _patch(path, _element_offset(path, k) + 40, 11, "<u2")
    with pytest.raises(DataSetError, match=r"dt_1\.ser.*data type code 11 is not read"):
        ctx.load("ser", path=path)


def test_no_valid_element(ctx, tmp_path):
    path, _ = _map(tmp_path, "empty_1.ser")
    _patch(path, 18, 0, "<u4")
    with pytest.raises(DataSetError, match=r"empty_1\.ser' holds no valid element"):
        ctx.load("ser", path=path)


def test_emi_companions(ctx, tmp_path):
    emi = tmp_path / "acq.emi"
    emi.write_bytes(b"\0" * 64 + b"<ObjectInfo><Uuid>1</Uuid></ObjectInfo>")
    with pytest.raises(DataSetError, match=r"acq\.emi.*'acq_1\.ser' is missing"):
        ctx.load("ser", path=str(emi))
    write_ser(tmp_path / "acq_1.ser", np.zeros((2, 3, 3), "uint8"))
    ds = ctx.load("ser", path=str(emi))
    assert ds.layout_info()["emi"]["Uuid"] == "1"
    write_ser(tmp_path / "acq_2.ser", np.zeros((2, 7), "float32"))
    with pytest.raises(DataSetError, match=r"acq\.emi' has 2 series files \['acq_1\.ser', "
                                           r"'acq_2\.ser'\]; load one of them"):
        ctx.load("ser", path=str(emi))
    # the second .ser gets the second document: here there is none, which is said
    ds = ctx.load("ser", path=str(tmp_path / "acq_2.ser"))
    assert "no <ObjectInfo> document for series 2" in ds.layout_info()["emi"]["note"]


def test_emi_does_not_parse(ctx, tmp_path):
    (tmp_path / "broken.emi").write_bytes(b"<ObjectInfo><Uuid>1</Oops></ObjectInfo>")
    write_ser(tmp_path / "broken_1.ser", np.zeros((2, 3, 3), "uint8"))
    with pytest.raises(DataSetError, match=r"broken\.emi' does not parse.*move the \.emi away"):
        ctx.load("ser", path=str(tmp_path / "broken_1.ser"))


def test_wrong_shapes(ctx, tmp_path):
    path, _ = _map(tmp_path, "shape_1.ser")
    with pytest.raises(DataSetError, match=r"shape_1\.ser.*sig_shape \(24,\) with flip_rows=True"):
        ctx.load("ser", path=path, sig_shape=(24,))
    with pytest.raises(DataSetError, match=r"shape_1\.ser.*sig_shape \(5, 5\) has 25 pixels"):
        ctx.load("ser", path=path, sig_shape=(5, 5))
    with pytest.raises(DataSetError, match=r"shape_1\.ser.*holds 15 frames.*nav_shape \(4, 4\)"):
        ctx.load("ser", path=path, nav_shape=(4, 4))


def test_emipath(ctx, tmp_path):
    """LiberTEM's ``emipath``: the metadata from an .emi of another name; positional as in
    LiberTEM (path, emipath, nav_shape, ...)."""
    from udfkit.errors import DataSetFileNotFoundError

    write_ser(tmp_path / "a_1.ser", np.zeros((4, 3, 3), "uint8"))
    (tmp_path / "other.emi").write_bytes(b"<ObjectInfo><Uuid>7</Uuid></ObjectInfo>")
    ds = ctx.load("ser", str(tmp_path / "a_1.ser"), str(tmp_path / "other.emi"), (2, 2))
    assert ds.layout_info()["emi"]["Uuid"] == "7" and ds.shape.nav.to_tuple() == (2, 2)
    with pytest.raises(DataSetFileNotFoundError, match=r"emi file '.*nothere\.emi' does not exist"):
        ctx.load("ser", path=str(tmp_path / "a_1.ser"), emipath=str(tmp_path / "nothere.emi"))
