"""The blo format: the conformance suite on blockfiles written here (8 and 16 bit, both byte
orders, square frames), the real sample file against rosettasciio and its own header, frame
header checks and bad input."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from udfkit.cli.info import describe
from udfkit.errors import DataSetError
from udfkit.io.formats import detect_format
from udfkit.io.formats.blo import (
    FRAME_HEADER_BYTES,
    BLOFormat,
    blo_header_dtype,
    read_blo_header,
    write_blo,
)
from udfkit.testing import DataSetTests, FormatCase, read_all
from udfkit.testing.profiles import examples
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def rsciio_blockfile_reader(monkeypatch):
    """rosettasciio's blockfile reader. Its module imports scikit-image for the writer only;
    where scikit-image is not installed an empty stand-in lets the reader be imported."""
    try:
        import skimage  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "skimage", types.ModuleType("skimage"))
    from rsciio.blockfile import file_reader

    return file_reader


def check_reads(ctx, ds, frames):
    """Tiles equal ``frames``; SumUDF and SumSigUDF equal numpy."""
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out.reshape(frames.shape), frames)
    res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    wide = frames.astype(np.float64)
    np.testing.assert_allclose(res_sum["intensity"].data, wide.sum(axis=0))
    np.testing.assert_allclose(res_sig["intensity"].data.reshape(-1),
                               wide.reshape(len(frames), -1).sum(axis=1))


# -- the conformance suite --------------------------------------------------------------------


def _square(case: FormatCase) -> FormatCase:
    """The same case with square frames (a blockfile's patterns are DP_SZ x DP_SZ)."""
    side = max(case.sig_shape)
    return FormatCase(nav_shape=case.nav_shape, sig_shape=(side, side), dtype=case.dtype,
                      sync_offset=case.sync_offset, num_partitions=case.num_partitions, roi=case.roi,
                      io_backend=case.io_backend, tile_sig=(case.tile_sig[0], side), depth=case.depth,
                      seed=case.seed)


class TestBLO(DataSetTests):
    """8-bit (magic 0x0102) and 16-bit (0x0103 with the bit-depth note) patterns, the 16-bit
    ones little- and big-endian."""

    format = "blo"
    dtypes = ("uint8", "uint16", ">u2")
    io_backends = BACKENDS
    sig_dims = 2
    # worker executors start once per class and cost most of the run: the default run covers
    # the in-process ones; the subclass below runs processes and dask (-m slow). Partitions
    # travel to workers by pickle / cloudpickle, which test_partitions_pickle checks here (the
    # mrc suite, on the same FileLayout partitions, runs all four executors by default).
    executors = ("inline", "threads")

    def _cases(self, **kwargs):
        return super()._cases(**kwargs).map(_square)

    def _fixed_case(self, io_backend):
        return _square(super()._fixed_case(io_backend))

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:-2]
        # a line scan is one row of the scan: NY = 1
        scan = data.reshape((1,) + data.shape) if len(nav) == 1 else data
        path = str(tmp_path / "scan.blo")
        write_blo(path, scan, notes="Precession angle : 0.5\r\nCamera gamma : on")
        return dict(path=path, nav_shape=nav)



@pytest.mark.slow
class TestBLOWorkers(TestBLO):
    """The suite on worker processes and a dask cluster."""

    executors = ("processes", "dask")

def test_square_cases_draw_square_frames():
    """The conformance cases above really are square (else the suite would test nothing)."""
    seen = []

    from hypothesis import given, settings

    @settings(max_examples=examples(20), deadline=None)
    @given(case=TestBLO()._cases())
    def check(case):
        seen.append(case.sig_shape)
        assert case.sig_shape[0] == case.sig_shape[1]
        assert case.data.shape == case.nav_shape + case.sig_shape

    check()
    assert len(seen) == examples(20)


# -- the real sample file ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_file_equals_rosettasciio(inline_ctx, monkeypatch, backend):
    file_reader = rsciio_blockfile_reader(monkeypatch)
    path = fixture("blo", "test2.blo")
    ref = np.asarray(file_reader(path)[0]["data"])
    ds = inline_ctx.load("blo", path=path, io_backend=backend, num_partitions=2)
    assert ds.shape.to_tuple() == ref.shape == (2, 3, 5, 5)
    assert ds.dtype == ref.dtype == np.dtype("uint8")
    check_reads(inline_ctx, ds, ref.reshape(6, 5, 5))


def test_sample_file_header_and_info(inline_ctx):
    path = fixture("blo", "test2.blo")
    # the header as numpy reads it, independently of the reader's parsing code
    raw = np.fromfile(path, dtype=[("id", "S6"), ("magic", "<u2"), ("o1", "<u4"), ("o2", "<u4"),
                                   ("unk", "<u4"), ("dp", "<u2"), ("rot", "<u2"), ("nx", "<u2"),
                                   ("ny", "<u2")], count=1)[0]
    assert (raw["id"], raw["magic"], raw["nx"], raw["ny"], raw["dp"]) == (b"IMGBLO", 0x0102, 3, 2, 5)
    assert os.path.getsize(path) == raw["o2"] + 6 * (FRAME_HEADER_BYTES + 25)
    h = read_blo_header(path)
    assert (h["NX"], h["NY"], h["DP_SZ"], h["Data_offset_2"]) == (3, 2, 5, raw["o2"])
    assert h["bits"] == 8 and "Camera gamma : on" in h["notes"]
    facts = describe(inline_ctx, "auto", {"path": path})
    assert facts["format"] == "blo"
    assert facts["nav_shape"] == [2, 3] and facts["sig_shape"] == [5, 5] and facts["dtype"] == "|u1"
    layout = facts["layout"]
    assert layout["scan"] == "NY x NX = 2 x 3" and layout["pattern"] == "DP_SZ = 5 (8-bit)"
    assert layout["data_offset"] == raw["o2"] and layout["checked_frame_headers"] == 6
    # the pixels from the documented layout: frame k at o2 + k * 31 + 6
    whole = np.fromfile(path, dtype=np.uint8)
    frames = np.stack([whole[raw["o2"] + k * 31 + 6:raw["o2"] + (k + 1) * 31] for k in range(6)])
    out, _ = read_all(inline_ctx.load("blo", path=path))
    np.testing.assert_array_equal(out.reshape(6, 25), frames)


def test_written_file_equals_rosettasciio(inline_ctx, monkeypatch, tmp_path):
    """Our writer's 8-bit files read the same in rosettasciio (it reads 8-bit only)."""
    file_reader = rsciio_blockfile_reader(monkeypatch)
    data = np.random.default_rng(3).integers(0, 256, (4, 7, 9, 9)).astype("uint8")
    path = str(tmp_path / "w.blo")
    write_blo(path, data)
    np.testing.assert_array_equal(np.asarray(file_reader(path)[0]["data"]), data)
    check_reads(inline_ctx, inline_ctx.load("blo", path=path), data.reshape(28, 9, 9))


# -- layouts and parameters -------------------------------------------------------------------


def scan_of(shape=(3, 4, 6, 6), dtype="uint8", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", ["uint16", ">u2"])
def test_16_bit(inline_ctx, tmp_path, dtype):
    data = (scan_of(dtype="uint16") * 300).astype(dtype)
    path = str(tmp_path / "d.blo")
    write_blo(path, data)
    ds = inline_ctx.load("blo", path=path)
    assert ds.dtype == np.dtype(dtype)
    assert ds.layout_info()["magic"] == "0x0103"
    check_reads(inline_ctx, ds, data.reshape(12, 6, 6).astype("=u2"))


def test_sig_shape_and_nav_shape(inline_ctx, tmp_path):
    data = scan_of()
    path = str(tmp_path / "d.blo")
    write_blo(path, data)
    ds = inline_ctx.load("blo", path=path, nav_shape=(12,), sig_shape=(36,))
    check_reads(inline_ctx, ds, data.reshape(12, 36))
    with pytest.raises(DataSetError, match=r"d\.blo.*sig_shape \(6, 5\) has 30 pixels.*have 36 \(6, 6\)"):
        inline_ctx.load("blo", path=path, sig_shape=(6, 5))


def test_endianess_parameter(inline_ctx, tmp_path):
    path = str(tmp_path / "be.blo")
    write_blo(path, scan_of(dtype=">u2"))
    assert inline_ctx.load("blo", path=path, endianess=">").dtype == np.dtype(">u2")
    with pytest.raises(DataSetError, match=r"be\.blo.*endianess='<'.*big-endian"):
        inline_ctx.load("blo", path=path, endianess="<")


def test_auto_and_guess(tmp_path):
    path = str(tmp_path / "noext.dat")
    write_blo(path, scan_of())
    assert BLOFormat.guess_can_open(path) == 1.0
    assert detect_format({"path": path}) == "blo"


# -- bad input --------------------------------------------------------------------------------


def test_truncated(inline_ctx, tmp_path):
    data = scan_of()
    path = str(tmp_path / "cut.blo")
    write_blo(path, data)
    stride = FRAME_HEADER_BYTES + 36
    os.truncate(path, read_blo_header(path)["Data_offset_2"] + 5 * stride + 10)
    with pytest.raises(DataSetError, match=r"cut\.blo.*truncated.*3 x 4 frames.*5 whole frames"):
        inline_ctx.load("blo", path=path)
    ds = inline_ctx.load("blo", path=path, allow_partial=True)
    res = inline_ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    assert res.valid_mask.reshape(-1).tolist() == [True] * 5 + [False] * 7
    np.testing.assert_allclose(res.data.reshape(-1)[:5], data.reshape(12, -1)[:5].sum(axis=1))


@pytest.mark.parametrize(("content", "found"), [
    (b"", "0 bytes"), (b"IMGBLO" + b"\0" * 20, "26 bytes"), (b"NOTBLO" + b"\0" * 300, "b'NOTBLO")])
def test_header_does_not_parse(inline_ctx, tmp_path, content, found):
    path = tmp_path / "bad.blo"
    path.write_bytes(content)
    with pytest.raises(DataSetError, match=rf"bad\.blo.*is no blockfile: expected a header of 240 bytes "
                                           rf"starting with b'IMGBLO'.*{found}"):
        inline_ctx.load("blo", path=str(path))


def _patch(path, offset, raw: bytes):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(raw)


def test_unknown_magic(inline_ctx, tmp_path):
    path = str(tmp_path / "m.blo")
    write_blo(path, scan_of())
    _patch(path, 6, b"\x07\x01")
    with pytest.raises(DataSetError, match=r"m\.blo.*unknown magic word 07 01.*expected 0x0102, 0x0103"):
        inline_ctx.load("blo", path=path)


def test_unsupported_bit_depth(inline_ctx, tmp_path):
    path = str(tmp_path / "b.blo")
    write_blo(path, scan_of(dtype="uint16"))
    with open(path, "rb") as f:
        head = f.read(4096)
    at = head.index(b"16 bits")
    _patch(path, at, b"12 bits")
    with pytest.raises(DataSetError, match=r"b\.blo.*'Blo Bit Depth: 12 bits'; expected 8 or 16"):
        inline_ctx.load("blo", path=path)


def test_frame_header_with_wrong_number(inline_ctx, tmp_path):
    path = str(tmp_path / "f.blo")
    write_blo(path, scan_of())
    off2 = read_blo_header(path)["Data_offset_2"]
    stride = FRAME_HEADER_BYTES + 36
    _patch(path, off2 + 7 * stride + 2, np.array(9, "<u4").tobytes())
    with pytest.raises(DataSetError, match=r"f\.blo.*frame header of frame 7 .*frame number 9; expected "
                                           r"sync aa 55 and frame number 7"):
        inline_ctx.load("blo", path=path)


def test_header_pattern_size_disagrees_with_frames(inline_ctx, tmp_path):
    """DP_SZ in the file header that does not fit the frames: the frame headers show it."""
    path = str(tmp_path / "dp.blo")
    data = scan_of((2, 2, 6, 6))
    write_blo(path, data)
    # DP_SZ 5 and a scan of 1 x 5 still fit in the file's size, so only the frame headers tell
    fields = blo_header_dtype().fields
    _patch(path, fields["DP_SZ"][1], np.array(5, "<u2").tobytes())
    _patch(path, fields["NX"][1], np.array(5, "<u2").tobytes())
    _patch(path, fields["NY"][1], np.array(1, "<u2").tobytes())
    with pytest.raises(DataSetError, match=r"dp\.blo.*frame header of frame 1 .*expected sync aa 55.*"
                                           r"DP_SZ=5"):
        inline_ctx.load("blo", path=path)


def test_data_offset_past_the_end(inline_ctx, tmp_path):
    path = str(tmp_path / "o.blo")
    write_blo(path, scan_of())
    _patch(path, blo_header_dtype().fields["Data_offset_2"][1], np.array(10**8, "<u4").tobytes())
    with pytest.raises(DataSetError, match=r"o\.blo.*Data_offset_2=100000000.*expected a byte offset"):
        inline_ctx.load("blo", path=path)


def test_empty_scan_in_header(inline_ctx, tmp_path):
    path = str(tmp_path / "z.blo")
    write_blo(path, scan_of())
    _patch(path, blo_header_dtype().fields["NY"][1], b"\0\0")
    with pytest.raises(DataSetError, match=r"z\.blo.*NY=0.*at least 1"):
        inline_ctx.load("blo", path=path)


def test_missing_file(inline_ctx, tmp_path):
    with pytest.raises(DataSetError, match=r"blo file .*nothere\.blo.* does not exist"):
        inline_ctx.load("blo", path=str(tmp_path / "nothere.blo"))


def test_write_blo_refuses_what_a_blockfile_cannot_hold(tmp_path):
    with pytest.raises(DataSetError, match=r"shape \(NY, NX, DP_SZ, DP_SZ\), got \(2, 2, 4, 5\)"):
        write_blo(str(tmp_path / "x.blo"), np.zeros((2, 2, 4, 5), "uint8"))
    with pytest.raises(DataSetError, match="uint8 or uint16 data, got float32"):
        write_blo(str(tmp_path / "x.blo"), np.zeros((2, 2, 4, 4), "float32"))



def test_every_frame_header_is_checked(inline_ctx, tmp_path):
    """A wrong frame number past the first run of checked headers (65536 frames) is found."""
    path = str(tmp_path / "long.blo")
    write_blo(path, np.zeros((2, 35000, 1, 1), dtype="uint8"))
    assert inline_ctx.load("blo", path=path).layout_info()["checked_frame_headers"] == 70000
    off2 = read_blo_header(path)["Data_offset_2"]
    _patch(path, off2 + 65537 * (FRAME_HEADER_BYTES + 1) + 2, np.array(3, "<u4").tobytes())
    with pytest.raises(DataSetError, match=r"long\.blo.*frame header of frame 65537 .*frame number 3;"):
        inline_ctx.load("blo", path=path)
