"""The seq format (NorPix StreamPix): the conformance suite on synthetic sequences of every bit
depth, the real sample file and synthetic files checked against pims.NorpixSeq (frames and
timestamps), footers and header versions, detection, ``udfkit info`` and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pims
import pytest

from udfkit import Context
from udfkit.cli.info import describe
from udfkit.errors import DataSetError
from udfkit.io.formats import detect_format
from udfkit.io.formats.seq import write_seq
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def pims_frames(path) -> np.ndarray:
    seq = pims.NorpixSeq(path)
    try:
        return np.stack([np.asarray(f) for f in seq])
    finally:
        seq.close()


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


class TestSEQ(DataSetTests):
    format = "seq"
    # the worker executors (each class starts its own processes and dask cluster, ~1 min on a
    # 2-core machine) run in TestSEQWorkers, in the slow run
    executors = ("inline", "threads")
    dtypes = ("uint8", "uint16", "uint32")
    io_backends = BACKENDS
    sig_dims = 2
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        path = tmp_path / "data.seq"
        nav = data.shape[:-2]
        # an odd stride: footers of timestamp plus padding, frames not aligned to anything
        frame_bytes = data.shape[-1] * data.shape[-2] * data.dtype.itemsize
        write_seq(path, data.reshape((-1,) + data.shape[-2:]), true_image_size=frame_bytes + 13)
        return dict(path=str(path), nav_shape=nav)


@pytest.mark.slow
class TestSEQWorkers(TestSEQ):
    """The conformance suite on the processes and dask executors."""

    executors = ("processes", "dask")
    max_examples = 3


# -- the real file and pims ---------------------------------------------------------------------

@pytest.mark.parametrize("io_backend", BACKENDS)
def test_sample_file_equals_pims(ctx, io_backend):
    path = fixture("seq", "sample_norpix6.seq")
    ref = pims_frames(path)
    ds = ctx.load("seq", path=path, io_backend=io_backend)
    assert ds.shape.to_tuple() == ref.shape and ds.dtype == ref.dtype
    out, hits = read_all(ds)
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, ref)
    total, sums = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    np.testing.assert_array_equal(total["intensity"].data, ref.sum(axis=0, dtype=np.float64))
    np.testing.assert_array_equal(sums["intensity"].data, ref.sum(axis=(1, 2), dtype=np.float64))


def test_sample_file_header_and_timestamps(ctx):
    path = fixture("seq", "sample_norpix6.seq")
    seq = pims.NorpixSeq(path)
    try:
        want_times = seq.dump_times_float()
        hd = seq.header_dict
    finally:
        seq.close()
    ds = ctx.load("seq", path=path)
    info = ds.layout_info()
    assert (info["width"], info["height"], info["bit_depth"]) == (hd["width"], hd["height"],
                                                                   hd["bit_depth"])
    assert info["true_image_size"] == hd["true_image_size"] == 8192
    assert info["frame_footer_bytes"] == 8192 - 32 * 36
    assert info["image_offset"] == 8192 and info["version"] == 5
    assert info["name"] == "Norpix seq"
    np.testing.assert_allclose(ds.timestamps(), want_times, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32"])
@pytest.mark.parametrize("version", [3, 5])
def test_synthetic_equals_pims(ctx, tmp_path, dtype, version):
    """Odd frame shapes, many frames, both header versions (image offset 1024 / 8192, 6- or
    8-byte timestamps), large padding: pims reads the same frames and times."""
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    data = rng.integers(0, min(info.max, 60000), size=(37, 7, 11), endpoint=True).astype(dtype)
    times = 1.6e9 + np.cumsum(rng.integers(1, 5000, size=37)) / 1e3
    path = str(tmp_path / "movie.seq")
    write_seq(path, data, version=version, true_image_size=data[0].nbytes + 517, timestamps=times)
    ref = pims_frames(path)
    np.testing.assert_array_equal(ref, data)
    ds = ctx.load("seq", path=path, nav_shape=(37,), num_partitions=3)
    assert ds.layout_info()["image_offset"] == (8192 if version >= 5 else 1024)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, ref)
    seq = pims.NorpixSeq(path)
    try:
        np.testing.assert_allclose(ds.timestamps(), seq.dump_times_float(), rtol=0, atol=1e-6)
    finally:
        seq.close()
    np.testing.assert_allclose(ds.timestamps(), times, rtol=0, atol=2e-6)


def test_nav_and_sig_overrides(ctx, tmp_path):
    data = np.arange(12 * 4 * 6, dtype="uint16").reshape(12, 4, 6)
    path = str(tmp_path / "a.seq")
    write_seq(path, data)
    ds = ctx.load("seq", path=path, nav_shape=(3, 4), sig_shape=(24,))
    assert ds.shape.to_tuple() == (3, 4, 24)
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    np.testing.assert_array_equal(res, data.reshape(3, 4, -1).sum(axis=-1))
    # fewer positions than frames: the rest is ignored, as for raw files
    ds = ctx.load("seq", path=path, nav_shape=(2, 5), sync_offset=2)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data[2:12])


def test_detection_and_info(ctx, tmp_path):
    path = str(tmp_path / "noext.bin")
    write_seq(path, np.ones((3, 4, 4), "uint8"))
    # the magic number wins over the extension
    assert detect_format({"path": path}) == "seq"
    ds = ctx.load("auto", path=path)
    assert ds.format_name == "seq" and ds.shape.to_tuple() == (3, 4, 4)
    facts = describe(ctx, "auto", {"path": path})
    assert facts["format"] == "seq"
    assert facts["layout"]["image_format"] == "100 (monochrome)"
    assert facts["layout"]["true_image_size"] == 24


# -- bad input ----------------------------------------------------------------------------------

def _write(tmp_path, name="bad.seq", **kw):
    path = str(tmp_path / name)
    write_seq(path, np.arange(4 * 5 * 6, dtype="uint16").reshape(4, 5, 6), **kw)
    return path


def _patch(path, offset, value, dtype="<u4"):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.array([value], dtype).tobytes())


def test_truncated_mid_frame(ctx, tmp_path):
    path = _write(tmp_path)
    os.truncate(path, os.path.getsize(path) - 7)
    with pytest.raises(DataSetError, match=r"bad\.seq.*truncated.*3 whole frames.*partial frame"):
        ctx.load("seq", path=path)
    ds = ctx.load("seq", path=path, allow_partial=True)
    assert ds.image_count == 3


def test_fewer_frames_than_allocated(ctx, tmp_path):
    path = _write(tmp_path, allocated_frames=9)
    with pytest.raises(DataSetError, match=r"bad\.seq.*says it holds 9 frames.*4 whole frames"):
        ctx.load("seq", path=path)
    assert ctx.load("seq", path=path, allow_partial=True).image_count == 4


def test_not_a_sequence(ctx, tmp_path):
    path = _write(tmp_path)
    _patch(path, 0, 0xBEEF)
    with pytest.raises(DataSetError, match=r"bad\.seq.*not a NorPix sequence.*0xFEED.*0xbeef"):
        ctx.load("seq", path=path)


def test_header_does_not_parse(ctx, tmp_path):
    path = str(tmp_path / "short.seq")
    with open(path, "wb") as f:
        f.write(b"\xed\xfe\x00\x00" + b"\0" * 100)
    with pytest.raises(DataSetError, match=r"short\.seq.*does not parse.*632 bytes.*104"):
        ctx.load("seq", path=path)


@pytest.mark.parametrize("fmt, name", [(200, "BGR"), (400, "RGB"), (101, "monochrome Bayer"),
                                       (4242, "unknown code")])
def test_colour_image_format(ctx, tmp_path, fmt, name):
    path = _write(tmp_path, image_format=fmt)
    with pytest.raises(DataSetError, match=rf"bad\.seq.*image format {fmt} \({name}\).*expected "
                                           r"monochrome"):
        ctx.load("seq", path=path)


def test_compressed(ctx, tmp_path):
    path = _write(tmp_path, compression_format=1)
    with pytest.raises(DataSetError, match=r"bad\.seq' is compressed \(compression format 1\)"):
        ctx.load("seq", path=path)


@pytest.mark.parametrize("depth", [12, 24, 0])
def test_bit_depth(ctx, tmp_path, depth):
    path = _write(tmp_path)
    _patch(path, 556, depth)
    with pytest.raises(DataSetError, match=rf"bad\.seq.*bit depth {depth} is not read"):
        ctx.load("seq", path=path)


def test_header_disagrees_with_itself(ctx, tmp_path):
    path = _write(tmp_path)
    _patch(path, 564, 61)  # image_size_bytes
    with pytest.raises(DataSetError, match=r"image_size_bytes is 61.*6 x 5 pixels of 16 bits need 60"):
        ctx.load("seq", path=path)
    path = _write(tmp_path, name="stride.seq")
    _patch(path, 580, 50)  # true_image_size below the image
    with pytest.raises(DataSetError, match=r"stride\.seq.*true_image_size 50.*less than the 60"):
        ctx.load("seq", path=path)


def test_wrong_shapes(ctx, tmp_path):
    path = _write(tmp_path)
    with pytest.raises(DataSetError, match=r"bad\.seq.*sig_shape \(7, 7\) has 49 pixels.*30"):
        ctx.load("seq", path=path, sig_shape=(7, 7))
    with pytest.raises(DataSetError, match=r"bad\.seq.*holds 4 frames.*nav_shape \(3, 3\)"):
        ctx.load("seq", path=path, nav_shape=(3, 3))


@pytest.mark.parametrize("io_backend", ["mmap", "buffered"])
def test_frames_are_read_in_place(ctx, tmp_path, io_backend):
    """Frames with footers at a fixed stride reach a UDF that reads the stored dtype as views
    of what the backend holds (strided by true_image_size), not through a decode pass."""
    from udfkit.io.tiling import TilingScheme

    data = np.arange(9 * 6 * 10, dtype="uint16").reshape(9, 6, 10)
    path = str(tmp_path / "v.seq")
    write_seq(path, data, true_image_size=data[0].nbytes + 40)
    ds = ctx.load("seq", path=path, io_backend=io_backend)
    (part,) = ds.get_partitions()
    tiles = list(part.get_tiles(TilingScheme.make((6, 10), (6, 10), 4, "tile"), "uint16"))
    assert [t.data.shape[0] for t in tiles] == [4, 4, 1]
    assert tiles[0].data.strides[0] == data[0].nbytes + 40 and tiles[0].data.base is not None
    np.testing.assert_array_equal(np.concatenate([t.data for t in tiles]), data)
