"""The dm format: the conformance suite on synthetic DM3/DM4 files (one file in C order, one
transposed file, a stack of one-image files), the writer checked against rosettasciio, the
real sample file against rosettasciio, pixel order and force_c_order, image selection, stacks,
and bad input: truncated and malformed files give a DataSetError naming the file and the tag."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats import detect_format
from udfkit.io.formats._dm_tags import parse_dm
from udfkit.io.formats.dm import DMFormat
from udfkit.testing import DataSetTests, read_all
from udfkit.testing.dm import write_dm
from udfkit.testing.profiles import examples
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def rsciio_array(path) -> np.ndarray:
    """The data rosettasciio reads: the file's pixels as the C array of the reversed DM
    dimensions (it does not interpret the pixel order tag)."""
    from rsciio.digitalmicrograph import file_reader

    images = file_reader(str(path))
    assert len(images) == 1
    return images[0]["data"]


def transposed_to_logical(file_array: np.ndarray, sig_dims: int) -> np.ndarray:
    """``(sig..., nav...)`` -> ``(nav..., sig...)``."""
    n_nav = file_array.ndim - sig_dims
    return np.moveaxis(file_array, list(range(sig_dims)), list(range(n_nav, n_nav + sig_dims)))


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


# -- the conformance suite -------------------------------------------------------------------------

class TestDMOneFile(DataSetTests):
    """One file, frames in C order (images, stacks, 4D scans with the order tag, spectrum
    images): read by udfkit's I/O backends. DM3 and DM4 by turns."""

    format = "dm"
    dtypes = ("uint8", "int16", ">u2", "int32", ">f4", "float64", "complex64")
    io_backends = BACKENDS
    sig_dims = (1, 2)
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        version = 3 if data.size % 2 else 4
        path = write_dm(tmp_path / f"data.dm{version}", data, sig_dims=sig_dims, order="C",
                        version=version)
        return {"path": path}


class TestDMOneFileEveryDtype(TestDMOneFile):
    """Every pixel type DM has, more examples (slow)."""

    pytestmark = pytest.mark.slow
    dtypes = ("uint8", "int8", "int16", "uint16", ">u2", "int32", "uint32", "float32", ">f4",
              "float64", "complex64", "complex128")
    executors = ("inline",)
    max_examples = 10


class TestDMTransposed(DataSetTests):
    """One file in the transposed order of 4D STEM and spectrum images (a detector pixel's
    values over the scan are contiguous): read by strided copies."""

    format = "dm"
    dtypes = ("uint16", ">i4", "float32", "complex64")
    io_backends = ()
    sig_dims = (1, 2)
    executors = ("inline", "processes")
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        version = 3 if data.size % 2 else 4
        return {"path": write_dm(tmp_path / f"scan.dm{version}", data, sig_dims=sig_dims, order="F",
                                 version=version)}


class TestDMStack(DataSetTests):
    """A stack of one-image files (``files=``), as LiberTEM's StackedDMDataSet."""

    format = "dm"
    dtypes = ("uint8", ">u2", "float32")
    io_backends = BACKENDS
    executors = ("inline", "threads")
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:data.ndim - sig_dims]
        frames = data.reshape((-1,) + data.shape[data.ndim - sig_dims:])
        files = [write_dm(tmp_path / f"frame_{i:03d}.dm4", frame, version=4 if i % 2 else 3)
                 for i, frame in enumerate(frames)]
        return {"files": files, "nav_shape": nav}

    def corrupt(self, params):
        files = params["files"]
        path = files[len(files) // 2]
        os.truncate(path, os.path.getsize(path) // 2)

    def file_names(self, params):
        return [os.path.basename(p) for p in params["files"]]


# -- the writer and the reader against rosettasciio -------------------------------------------------

WRITER_CASES = [
    # (logical shape, sig_dims, order)
    ((5, 7), 2, "C"),
    ((3, 5, 7), 2, "C"),
    ((3, 5, 7), 2, "F"),
    ((2, 3, 5, 7), 2, "C"),
    ((2, 3, 5, 7), 2, "F"),
    ((3, 4, 6), 1, "F"),
    ((3, 4, 6), 1, "C"),
    ((4, 6), 1, "C"),
]


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize(("shape", "sig_dims", "order"), WRITER_CASES,
                         ids=[f"{'x'.join(map(str, s))}-sig{d}-{o}" for s, d, o in WRITER_CASES])
def test_synthetic_files_read_as_rsciio_reads_them(ctx, tmp_path, shape, sig_dims, order, version):
    """The writer's files are DM files to rosettasciio, and udfkit reads the same pixels:
    rosettasciio's array is the file order, i.e. transposed for ``order="F"``."""
    rng = np.random.default_rng(sum(shape))
    data = rng.integers(0, 1000, shape).astype("uint16")
    path = write_dm(tmp_path / f"x.dm{version}", data, sig_dims=sig_dims, order=order, version=version)
    theirs = rsciio_array(path)
    n_nav = len(shape) - sig_dims
    if order == "F" and n_nav and shape[:n_nav] != (1,):
        np.testing.assert_array_equal(transposed_to_logical(theirs, sig_dims), data)
    else:
        np.testing.assert_array_equal(theirs, data.reshape(theirs.shape))
    ds = ctx.load("dm", path=path)
    nav = shape[:n_nav] or (1,)
    assert tuple(ds.shape) == nav + shape[n_nav:]
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out, data.reshape(out.shape))


def test_big_endian_file(ctx, tmp_path):
    """Byte order flag 0: tag values and pixels big-endian; the dtype says so."""
    data = np.arange(2 * 3 * 4 * 5, dtype=">f4").reshape(2, 3, 4, 5)
    for order in "CF":
        path = write_dm(tmp_path / f"be_{order}.dm3", data, order=order, version=3)
        ds = ctx.load("dm", path=path)
        assert ds.dtype.str == ">f4"
        assert ds.layout_info()["byteorder"] == "big"
        res = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
        np.testing.assert_array_equal(res[0]["intensity"].data, data.astype("f8").sum(axis=(0, 1)))
        np.testing.assert_array_equal(res[1]["intensity"].data, data.astype("f8").sum(axis=(2, 3)))


# -- the real sample file ------------------------------------------------------------------------

def test_fixture_equals_rsciio(ctx):
    """test-1.dm4 (GMS-written: a thumbnail, then a 2x2x2 int16 stack) reads as rosettasciio
    reads it, on every backend."""
    path = fixture("dm", "test-1.dm4")
    theirs = rsciio_array(path)
    assert theirs.shape == (2, 2, 2) and theirs.dtype == np.int16
    for backend in BACKENDS:
        ds = ctx.load("dm", path=path, io_backend=backend)
        assert tuple(ds.shape) == (2, 2, 2) and ds.dtype == np.dtype("<i2")
        out, hits = read_all(ds, np.dtype("int16"))
        np.testing.assert_array_equal(out, theirs)
        res = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
        np.testing.assert_array_equal(res[0]["intensity"].data, theirs.sum(axis=0))
        np.testing.assert_array_equal(res[1]["intensity"].data, theirs.sum(axis=(1, 2)))
    info = ds.layout_info()
    # the header's own fields: version 4, little-endian, image 1 after the thumbnail
    assert (info["dm_version"], info["byteorder"], info["images"], info["dataset_index"]) == \
        (4, "little", 2, 1)
    assert info["dimensions"] == (2, 2, 2) and info["data_type"] == 1 and info["order"] == "C"


def test_fixture_auto_and_info(ctx):
    from udfkit.cli.info import describe

    path = fixture("dm", "test-1.dm4")
    assert detect_format({"path": path}) == "dm"
    assert DMFormat.guess_can_open(path) == 1.0
    facts = describe(ctx, "auto", {"path": path})
    assert facts["format"] == "dm" and facts["nav_shape"] == [2] and facts["sig_shape"] == [2, 2]
    assert facts["layout"]["data_offset"] == parse_dm(path).get(
        "ImageList", "TagGroup1", "ImageData", "Data").offset
    # the thumbnail is index 0; asking for it says why it cannot be read
    with pytest.raises(DataSetError, match=r"test-1\.dm4.*DataType 23 \(RGBA\)"):
        ctx.load("dm", path=path, dataset_index=0)


def test_fixture_tags_against_rsciio():
    """The tag parser gives the values rosettasciio gives for the fixture's image tags."""
    from rsciio.digitalmicrograph import file_reader

    path = fixture("dm", "test-1.dm4")
    md = file_reader(path)[0]["original_metadata"]
    ours = parse_dm(path)
    image = ours.get("ImageList", "TagGroup1", "ImageData")
    theirs = md["ImageList"]["TagGroup0"]["ImageData"]
    assert image["DataType"] == theirs["DataType"]
    assert image["PixelDepth"] == theirs["PixelDepth"]
    assert tuple(image["Dimensions"].values()) == tuple(theirs["Dimensions"].values())
    assert ours.get("Thumbnails", "TagGroup0", "ImageIndex") == md["Thumbnails"]["TagGroup0"]["ImageIndex"]
    scale = ("Page Behavior", "PageTransform", "Scale")
    assert ours.get(*scale) == md[scale[0]][scale[1]][scale[2]]


# -- pixel order --------------------------------------------------------------------------------

def test_transposed_and_force_c_order(ctx, tmp_path):
    """A transposed 4D file reads in its true shape; force_c_order=True reads the bytes as C
    order (LiberTEM's meaning): scan and detector axes trade places, as rosettasciio shows them."""
    data = np.random.default_rng(3).integers(0, 100, (3, 4, 5, 6)).astype("uint16")
    path = write_dm(tmp_path / "scan.dm4", data, order="F")
    ds = ctx.load("dm", path=path)
    assert tuple(ds.shape) == (3, 4, 5, 6)
    info = ds.layout_info()
    assert info["order"] == "transposed" and "without a 'Data Order Swapped' tag" in info["order_from"]
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
    forced = ctx.load("dm", path=path, force_c_order=True)
    assert tuple(forced.shape) == (5, 6, 3, 4)
    out, _ = read_all(forced)
    np.testing.assert_array_equal(out, rsciio_array(path).reshape(out.shape))


@pytest.mark.parametrize("tag", [True, False])
def test_order_tag_rules(ctx, tmp_path, tag):
    """``Data Order Swapped`` decides the order of a 4D file and of a 3D stack alike."""
    data = np.random.default_rng(4).integers(0, 100, (3, 5, 4)).astype("int16")
    path = write_dm(tmp_path / "stack.dm4", data, order="C" if tag else "F", order_tag=True)
    ds = ctx.load("dm", path=path, num_partitions=2)
    assert ds.layout_info()["order"] == ("C" if tag else "transposed")
    assert ds.layout_info()["order_from"] == f"tag 'Meta Data/Data Order Swapped' = {int(tag)}"
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data)


def test_transposed_sig_and_nav_reshape(ctx, tmp_path):
    data = np.random.default_rng(5).integers(0, 100, (4, 3, 2, 6)).astype("float32")
    path = write_dm(tmp_path / "scan.dm4", data, order="F")
    ds = ctx.load("dm", path=path, nav_shape=(12,), sig_shape=(3, 4))
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data.reshape(12, 3, 4))
    with pytest.raises(DataSetError, match=r"scan\.dm4.*sig_shape \(4, 4\) has 16 pixels.*\(2, 6\)"):
        ctx.load("dm", path=path, sig_shape=(4, 4))


def test_transposed_partitions_align_to_blocks(ctx, tmp_path, monkeypatch):
    """Transposed files are read in blocks of frames, each copied in slabs of pixels;
    partitions start on block boundaries and give the right frames with a ROI."""
    import udfkit.io.formats.dm as dm

    data = np.random.default_rng(6).integers(0, 100, (5, 7, 9, 10)).astype("uint16")
    path = write_dm(tmp_path / "scan.dm4", data, order="F")
    monkeypatch.setattr(dm, "TRANSPOSED_BLOCK_BYTES", 4 * 9 * 10 * 2)
    monkeypatch.setattr(dm, "TRANSPOSE_TILE_BYTES", 1)  # slabs of 16 of the 90 pixels
    ds = ctx.load("dm", path=path, num_partitions=3)
    assert ds.layout_info()["block_frames"] == 4
    assert all(a % 4 == 0 for a, _ in ds.partition_bounds()[1:] if a)
    roi = np.random.default_rng(7).random((5, 7)) < 0.5
    res = ctx.run_udf(dataset=ds, udf=SumUDF(), roi=roi)
    np.testing.assert_array_equal(res["intensity"].data, data[roi].astype("f8").sum(axis=0))


# -- image selection ------------------------------------------------------------------------------

def test_dataset_index_and_defaults(ctx, tmp_path):
    data = np.arange(3 * 4 * 5, dtype="uint16").reshape(3, 4, 5)
    extra = np.full((6, 7), 9, dtype="float32")
    path = write_dm(tmp_path / "many.dm4", data, more_images=[extra])
    ds = ctx.load("dm", path=path)
    assert ds.layout_info()["dataset_index"] == 1 and ds.layout_info()["images"] == 3
    other = ctx.load("dm", path=path, dataset_index=2)
    assert tuple(other.shape) == (1, 6, 7) and other.dtype == np.float32
    out, _ = read_all(other)
    np.testing.assert_array_equal(out[0], extra)
    with pytest.raises(DataSetError,
                       match=r"many\.dm4.*dataset_index: expected an integer from 0 to 2.*got 3"):
        ctx.load("dm", path=path, dataset_index=3)
    # without a thumbnail the data image is entry 0
    plain = write_dm(tmp_path / "plain.dm3", data, version=3, thumbnail=False)
    assert ctx.load("dm", path=plain).layout_info()["dataset_index"] == 0


def test_no_readable_image(ctx, tmp_path):
    """Every image is a thumbnail or of a type udfkit does not read: the error lists them."""
    path = write_dm(tmp_path / "rgb.dm4", np.zeros((4, 5), "uint32"), override={"data_type": 23})
    with pytest.raises(DataSetError, match=r"rgb\.dm4.*no image udfkit can read.*image 0: a thumbnail.*"
                                           r"DataType 23 \(RGBA\)"):
        ctx.load("dm", path=path)


def test_one_dimensional_image(ctx, tmp_path):
    path = write_dm(tmp_path / "spec.dm4", np.zeros((1, 9), "float32"), thumbnail=False,
                    override={"dimensions": (9,)})
    with pytest.raises(DataSetError, match=r"spec\.dm4.*one-dimensional"):
        ctx.load("dm", path=path)


# -- stacks ---------------------------------------------------------------------------------------

def _series(tmp_path, n=6, shape=(3, 4), dtype="uint16", skip=None):
    data = np.random.default_rng(8).integers(0, 100, (n,) + shape).astype(dtype)
    paths = [write_dm(tmp_path / f"img_{i + 1}.dm4", data[i]) for i in range(n) if i != skip]
    return data, paths


def test_stack_glob_directory_natural_order(ctx, tmp_path):
    """A glob and a directory list the files in natural order (img_10 after img_9)."""
    data, paths = _series(tmp_path, n=11)
    expected = data.astype("f8").sum(axis=(1, 2))
    for source in (str(tmp_path / "img_*.dm4"), str(tmp_path)):
        assert detect_format({"path": source}) == "dm"
        ds = ctx.load("auto", path=source)
        assert tuple(ds.shape) == (11, 3, 4) and ds.layout_info()["files"] == 11
        res = ctx.run_udf(dataset=ds, udf=SumSigUDF())
        np.testing.assert_array_equal(res["intensity"].data, expected)
    ds = ctx.load("dm", files=paths, nav_shape=(11,), same_offset=True)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data)


def test_stack_of_3d_files(ctx, tmp_path):
    """Each file may hold several frames (a 3D stack): frames follow file after file."""
    data = np.random.default_rng(9).integers(0, 100, (7, 3, 4)).astype("int32")
    paths = [write_dm(tmp_path / "a.dm4", data[:3]), write_dm(tmp_path / "b.dm3", data[3:4], version=3),
             write_dm(tmp_path / "c.dm4", data[4:])]
    ds = ctx.load("dm", path=paths, nav_shape=(7,), sig_shape=(12,), num_partitions=3)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data.reshape(7, 12))


def test_stack_missing_file_in_the_middle(ctx, tmp_path):
    data, paths = _series(tmp_path, n=5, skip=2)
    listed = paths[:2] + [str(tmp_path / "img_3.dm4")] + paths[2:]
    with pytest.raises(DataSetFileNotFoundError, match=r"img_3\.dm4.*does not exist.*must not miss"):
        ctx.load("dm", files=listed)
    with pytest.raises(DataSetError, match=r"jumps from 2 to 4 before 'img_4\.dm4': expected 'img_3\.dm4'"):
        ctx.load("dm", path=str(tmp_path / "img_*.dm4"))


def test_stack_files_disagree(ctx, tmp_path):
    _, paths = _series(tmp_path, n=3)
    odd = write_dm(tmp_path / "odd.dm4", np.zeros((4, 4), "uint16"))
    with pytest.raises(DataSetError, match=r"odd\.dm4.*file 4 of 4.*expected frames of shape \(3, 4\).*"
                                           r"found shape \(4, 4\)"):
        ctx.load("dm", files=paths + [odd])
    other = write_dm(tmp_path / "float.dm4", np.zeros((3, 4), "float32"))
    with pytest.raises(DataSetError,
                       match=r"float\.dm4.*dtype uint16.*found shape \(3, 4\) and dtype float32"):
        ctx.load("dm", files=paths + [other])
    transposed = write_dm(tmp_path / "t.dm4", np.zeros((2, 2, 3, 4), "uint16"), order="F")
    with pytest.raises(DataSetError, match=r"t\.dm4.*transposed data"):
        ctx.load("dm", files=paths + [transposed])
    big = write_dm(tmp_path / "big.dm4", np.zeros((3, 3, 4), "uint16"))
    with pytest.raises(DataSetError, match=r"big\.dm4.*same_offset=True every file must be laid out"):
        ctx.load("dm", files=paths + [big], same_offset=True)
    with pytest.raises(DataSetError, match="not both"):
        ctx.load("dm", path=paths[0], files=paths)


# -- bad input ------------------------------------------------------------------------------------

def test_truncated_in_pixels_and_in_tags(ctx, tmp_path):
    data = np.zeros((4, 6, 8), "uint16")
    path = write_dm(tmp_path / "cut.dm4", data)
    offset = parse_dm(path).get("ImageList", "TagGroup1", "ImageData", "Data").offset
    os.truncate(path, offset + 100)
    with pytest.raises(DataSetError, match=r"cut\.dm4'.*tag ImageList/TagGroup1/ImageData/Data: truncated"
                                           r".*needs 384 bytes, but only 100 follow"):
        ctx.load("dm", path=path)
    path = write_dm(tmp_path / "cut2.dm3", data, version=3)
    os.truncate(path, 30)
    with pytest.raises(DataSetError, match=r"cut2\.dm3.*truncated.*tag ImageList"):
        ctx.load("dm", path=path)
    path = write_dm(tmp_path / "tiny.dm4", data)
    os.truncate(path, 10)
    with pytest.raises(DataSetError, match=r"tiny\.dm4' has 10 bytes"):
        ctx.load("dm", path=path)


def test_truncated_after_load(ctx, tmp_path):
    """The transposed path checks the file size before it maps (no SIGBUS)."""
    data = np.ones((4, 4, 3, 3), "float32")
    path = write_dm(tmp_path / "shrunk.dm4", data, order="F")
    ds = ctx.load("dm", path=path)
    os.truncate(path, parse_dm(path).get("ImageList", "TagGroup1", "ImageData", "Data").offset + 100)
    with pytest.raises(DataSetError, match=r"shrunk\.dm4.*truncated after it was loaded"):
        ctx.run_udf(dataset=ds, udf=SumUDF())


def _replace_once(path, old: bytes, new: bytes) -> None:
    raw = Path(path).read_bytes()
    assert raw.count(old) >= 1
    Path(path).write_bytes(raw.replace(old, new, 1))


@pytest.mark.parametrize("version", [3, 4])
def test_malformed_tags(ctx, tmp_path, version):
    """Tags that do not parse name the file and the tag path."""
    data = np.zeros((2, 3, 4), "uint16")
    word = 8 if version == 4 else 4
    cases = {
        "delimiter": (b"%%%%", b"%%#%", r"tag ImageList.*expected the data delimiter"),
        "kind": (b"\x14\x00\x0aDimensions", b"\x17\x00\x0aDimensions",
                 r"tag ImageList/TagGroup0/ImageData/Dimensions: tag kind: expected 20 \(group\) or 21"),
        "type code": (b"%%%%" + (1).to_bytes(word, "big") + (6).to_bytes(word, "big"),
                      b"%%%%" + (1).to_bytes(word, "big") + (99).to_bytes(word, "big"),
                      r"tag ImageList/TagGroup0/ImageData/Calibrations/Brightness/Origin: "
                      r"unknown type code 99"),
    }
    for name, (old, new, pattern) in cases.items():
        path = write_dm(tmp_path / f"{name.replace(' ', '_')}.dm{version}", data, version=version)
        _replace_once(path, old, new)
        with pytest.raises(DataSetError, match=pattern) as info:
            ctx.load("dm", path=path)
        assert os.path.basename(path) in str(info.value)


def test_malformed_header(ctx, tmp_path):
    path = write_dm(tmp_path / "v5.dm4", np.zeros((3, 4), "uint8"))
    raw = bytearray(Path(path).read_bytes())
    raw[3] = 5
    Path(path).write_bytes(bytes(raw))
    assert detect_format({"path": path}) == "dm"  # by its name: the reader says what is wrong
    with pytest.raises(DataSetError, match=r"v5\.dm4.*version: expected 3 \(DM3\) or 4 \(DM4\), found 5"):
        ctx.load("auto", path=path)
    path = write_dm(tmp_path / "order.dm3", np.zeros((3, 4), "uint8"), version=3)
    raw = bytearray(Path(path).read_bytes())
    raw[11] = 7
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(DataSetError, match=r"order\.dm3.*byte order flag.*found 7"):
        ctx.load("dm", path=path)


def test_dm4_tag_length_disagrees(ctx, tmp_path):
    path = write_dm(tmp_path / "len.dm4", np.zeros((3, 4), "uint8"), thumbnail=False)
    name = b"\x15\x00\x0aPixelDepth"
    raw = Path(path).read_bytes()
    at = raw.index(name) + len(name)
    length = int.from_bytes(raw[at:at + 8], "big")
    Path(path).write_bytes(raw[:at] + (length + 1).to_bytes(8, "big") + raw[at + 8:])
    with pytest.raises(DataSetError, match=r"len\.dm4.*tag ImageList/TagGroup0/ImageData/PixelDepth: "
                                           r"the DM4 tag length says"):
        ctx.load("dm", path=path)


def test_huge_counts_fail_fast(ctx, tmp_path):
    """A count claiming more tags or elements than the file holds is an error at once."""
    path = write_dm(tmp_path / "count.dm3", np.zeros((3, 4), "uint16"), version=3, thumbnail=False)
    _replace_once(path, b"\x00\x00\x00\x00\x00\x02\x15\x00\x00", b"\x00\x00\x7f\xff\xff\xff\x15\x00\x00")
    t0 = time.perf_counter()
    with pytest.raises(DataSetError, match=r"count\.dm3.*tag ImageList/TagGroup0/ImageData/Dimensions"):
        ctx.load("dm", path=path)
    assert time.perf_counter() - t0 < 1


def test_deep_nesting(tmp_path):
    """Groups nested past MAX_DEPTH are an error, not a RecursionError."""
    from udfkit.io.formats._dm_tags import MAX_DEPTH

    body = b""
    for _ in range(MAX_DEPTH + 5):
        body = b"\x14\x00\x01g" + b"\x00\x00" + (1 if body else 0).to_bytes(4, "big") + body
    raw = (3).to_bytes(4, "big") + (len(body) + 6).to_bytes(4, "big") + (1).to_bytes(4, "big") \
        + b"\x00\x00" + (1).to_bytes(4, "big") + body
    path = tmp_path / "deep.dm3"
    path.write_bytes(raw)
    with pytest.raises(DataSetError, match=rf"deep\.dm3.*g/g/g.*deeper than {MAX_DEPTH}"):
        parse_dm(path)


@pytest.mark.parametrize(("override", "pattern"), [
    ({"dimensions": (4, 3, 3)}, r"ImageData/Data holds 24 bytes.*Dimensions \(4, 3, 3\) x uint16 need 72"),
    ({"pixel_depth": 4}, r"PixelDepth is 4 bytes, but DataType 10 \(uint16\) has 2"),
    ({"data_type": 8}, r"DataType 8 \(RGB\) is not a pixel type udfkit reads"),
    ({"data_type": 27}, r"DataType 27 \(packed complex64 \(FFT\)\)"),
])
def test_tags_disagree_with_pixels(ctx, tmp_path, override, pattern):
    """The image's tags disagree with each other: an error naming file, tag and both values."""
    path = write_dm(tmp_path / "bad.dm4", np.zeros((3, 4), "uint16"), override=override)
    with pytest.raises(DataSetError, match=r"bad\.dm4.*image 1 \(tag ImageList/TagGroup1\): .*" + pattern):
        ctx.load("dm", path=path, dataset_index=1)


def test_not_a_dm_file(ctx, tmp_path):
    path = tmp_path / "notes.dm4"
    path.write_bytes(b"hello world, this is not a DigitalMicrograph file at all")
    with pytest.raises(DataSetError, match=r"notes\.dm4.*version: expected 3 \(DM3\) or 4"):
        ctx.load("dm", path=str(path))
    other = tmp_path / "scan.raw"
    np.zeros(100, "uint8").tofile(other)
    assert DMFormat.guess_can_open(str(other)) == 0.0
    # a DM file without its extension is still recognised by its header
    bare = write_dm(tmp_path / "scan", np.zeros((3, 4), "uint8"))
    assert detect_format({"path": bare}) == "dm"
    assert ctx.load("auto", path=bare).shape == (1, 3, 4)


@pytest.mark.parametrize("version", [3, 4])
def test_damaged_files_never_crash(tmp_path, version):
    """Random truncations and byte flips: parsing succeeds or raises DataSetError naming the
    file -- never IndexError, struct.error, RecursionError or a hang."""
    path = write_dm(tmp_path / f"fuzz.dm{version}", np.arange(60, dtype="uint16").reshape(3, 4, 5),
                    version=version)
    good = Path(path).read_bytes()
    target = tmp_path / f"damaged.dm{version}"

    @settings(max_examples=examples(60), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cut=st.integers(0, len(good)), flips=st.lists(st.tuples(st.integers(0, len(good) - 1),
                                                                   st.integers(0, 255)), max_size=3))
    def check(cut, flips):
        raw = bytearray(good[:cut] if cut < len(good) else good)
        for at, value in flips:
            if at < len(raw):
                raw[at] = value
        target.write_bytes(bytes(raw))
        t0 = time.perf_counter()
        try:
            parse_dm(target)
        except DataSetError as e:
            assert "damaged.dm" in str(e)
        assert time.perf_counter() - t0 < 1

    check()


def test_transposed_reader(tmp_path):
    """The transposed reader gathers frames from a (pixels, frames) array."""
    from udfkit.io.formats.dm import _TransposedReader

    arr = np.arange(5 * 7, dtype="<i2").reshape(5, 7)
    path = tmp_path / "t.bin"
    arr.tofile(path)
    out = np.zeros((3, 5), "<i2")
    with _TransposedReader(str(path), 0, "<i2", 5, 7, (5,)).open() as opened:
        opened.read(2, 5, out)
    np.testing.assert_array_equal(out, arr[:, 2:5].T)


def test_implausible_type_description(ctx, tmp_path):
    """A damaged type description length that would still fit in a large file is refused
    before anything is allocated for it."""
    path = write_dm(tmp_path / "info.dm4", np.zeros((200, 200), "uint16"))
    _replace_once(path, b"%%%%" + (1).to_bytes(8, "big"), b"%%%%" + (5000).to_bytes(8, "big"))
    with pytest.raises(DataSetError, match=r"info\.dm4.*Brightness/Origin: type description length: "
                                           r"expected 1 to 4096 words.*found 5000"):
        ctx.load("dm", path=path)


#: python of a venv with libertem==0.16.0, as for benchmarks/compare_libertem.py
LT_PYTHON = Path(os.environ.get("LIBERTEM_PYTHON", ""))

LT_SCRIPT = """
import json
import libertem.api as lt
from libertem.udf.sumsigudf import SumSigUDF

out = {}
with lt.Context.make_with("inline") as ctx:
    for name, kw in json.loads(open("cases.json").read()).items():
        try:
            ds = ctx.load("dm", **kw)
            sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
            out[name] = {"shape": [int(n) for n in ds.shape], "sums": sums.ravel().tolist()}
        except Exception as e:
            out[name] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_same_as_libertem(ctx, tmp_path):
    """LiberTEM 0.16 (its own venv, ncempy parsing the tags) reads the synthetic files to the
    same shapes and values, with the same parameter names and meanings (force_c_order, files=);
    it refuses the transposed file that udfkit reads in its true shape."""
    import json
    import subprocess

    if not os.environ.get("LIBERTEM_PYTHON") or not LT_PYTHON.is_file():
        pytest.skip("set LIBERTEM_PYTHON to the python of a venv with libertem==0.16.0 to compare "
                    "with LiberTEM")
    data = np.random.default_rng(10).integers(0, 1000, (3, 4, 5, 6)).astype("uint16")
    write_dm(tmp_path / "c4.dm4", data, order="C")
    write_dm(tmp_path / "f4.dm4", data, order="F")
    write_dm(tmp_path / "s3.dm3", data[0], version=3)
    files = [write_dm(tmp_path / f"f{i}.dm4", data[0, i]) for i in range(4)]
    cases = {"c4": {"path": "c4.dm4"}, "f4": {"path": "f4.dm4"},
             "f4force": {"path": "f4.dm4", "force_c_order": True}, "s3": {"path": "s3.dm3"},
             "stack": {"files": files, "nav_shape": [2, 2]}}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "lt.py").write_text(LT_SCRIPT)
    done = subprocess.run([str(LT_PYTHON), "lt.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    assert "C-ordered" in theirs["f4"]["error"]
    for name, kw in cases.items():
        ds = ctx.load("dm", **{k: (str(tmp_path / v) if k == "path" else v) for k, v in kw.items()})
        ours = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
        if name == "f4":  # LiberTEM refuses it; udfkit reads the true shape
            assert tuple(ds.shape) == data.shape
            np.testing.assert_array_equal(ours, data.astype("f8").sum(axis=(2, 3)))
            continue
        assert list(ds.shape) == theirs[name]["shape"], name
        np.testing.assert_array_equal(ours.ravel(), theirs[name]["sums"])
