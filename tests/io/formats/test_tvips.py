"""The tvips format: the conformance suite on synthetic series split over several files, the
real sample file and series written by rosettasciio checked against rsciio.tvips, series found
from any of their files, scan-shape detection from the frame headers, and bad input (missing
files, truncation, headers that do not parse)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from rsciio.tvips import file_reader, file_writer

from udfkit import Context
from udfkit.cli.info import describe
from udfkit.errors import DataSetError
from udfkit.io.formats import detect_format
from udfkit.io.formats.tvips import series_files, write_tvips
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


class TestTVIPS(DataSetTests):
    format = "tvips"
    # the worker executors (each class starts its own processes and dask cluster, ~1 min on a
    # 2-core machine) run in TestTVIPSWorkers, in the slow run
    executors = ("inline", "threads")
    dtypes = ("uint8", "uint16")
    io_backends = BACKENDS
    sig_dims = 2
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        frames = data.reshape((-1,) + data.shape[-2:])
        # split over up to 3 files, so that partitions and tiles cross file boundaries
        per_file = max(1, -(-len(frames) // 3))
        write_tvips(tmp_path / "rec_000.tvips", frames, frames_per_file=per_file,
                    frame_header_bytes=60 + len(frames) % 5)
        return dict(path=str(tmp_path / "rec_000.tvips"), nav_shape=data.shape[:-2])


@pytest.mark.slow
class TestTVIPSWorkers(TestTVIPS):
    """The conformance suite on the processes and dask executors."""

    executors = ("processes", "dask")
    max_examples = 3


def rsciio_signal(data):
    """A rosettasciio signal dict of (n, h, w) frames for rsciio.tvips.file_writer."""
    axes = [{"name": "t", "size": data.shape[0], "scale": 1, "offset": 0, "units": "",
             "navigate": True}]
    axes += [{"name": n, "size": s, "scale": 0.1, "offset": 0, "units": "1/nm", "navigate": False}
             for n, s in zip(("dy", "dx"), data.shape[1:])]
    return {"data": data, "axes": axes, "metadata": {}, "original_metadata": {},
            "attributes": {"_lazy": False}}


# -- real file and rosettasciio -----------------------------------------------------------------

@pytest.mark.parametrize("io_backend", BACKENDS)
def test_sample_file_equals_rsciio(ctx, io_backend):
    path = fixture("tvips", "test_tvips_2233_000.tvips")
    ref = file_reader(path)[0]["data"]
    ds = ctx.load("tvips", path=path, io_backend=io_backend)
    assert ds.shape.to_tuple() == ref.shape == (4, 3, 3) and ds.dtype == ref.dtype
    out, hits = read_all(ds)
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, ref)
    total = ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data
    np.testing.assert_array_equal(total, ref.sum(axis=0, dtype=np.float64))
    info = ds.layout_info()
    assert info["frame_header_bytes"] == 60 and info["version"] == 2 and info["bits"] == 16
    assert info["high_tension_kv"] == 200 and info["scan"]["detected"] is False
    # the rotator index of rsciio's frame header is the same field
    np.testing.assert_array_equal(ds.frame_headers()["Index_of_rotator"], [1, 2, 3, 4])


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_series_written_by_rsciio(ctx, tmp_path, dtype):
    """rosettasciio splits a series over files by size; every file given as path loads the
    whole series, to rsciio's values."""
    data = np.random.default_rng(3).integers(0, 250, (23, 9, 13)).astype(dtype)
    record = 60 + data[0].nbytes
    file_writer(str(tmp_path / "w_000.tvips"), rsciio_signal(data), max_file_size=256 + 5 * record,
                show_progressbar=False)
    names = sorted(os.listdir(tmp_path))
    assert len(names) >= 4 and names == [f"w_{i:03d}.tvips" for i in range(len(names))]
    ref = file_reader(str(tmp_path / "w_000.tvips"))[0]["data"]
    np.testing.assert_array_equal(ref, data)
    for name in (names[0], names[2], names[-1]):
        ds = ctx.load("tvips", path=str(tmp_path / name), num_partitions=4)
        assert ds.shape.to_tuple() == data.shape
        out, _ = read_all(ds)
        np.testing.assert_array_equal(out, ref)
    want = [(os.path.getsize(tmp_path / n) - (256 if i == 0 else 0)) // record
            for i, n in enumerate(names)]
    assert [f["frames"] for f in ds.layout_info()["files"]] == want and sum(want) == 23
    sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    np.testing.assert_array_equal(sums, ref.sum(axis=(1, 2), dtype=np.float64))


def test_our_writer_read_by_rsciio(ctx, tmp_path):
    data = np.random.default_rng(4).integers(0, 60000, (11, 5, 6)).astype("uint16")
    write_tvips(tmp_path / "o_000.tvips", data, frames_per_file=4, frame_header_bytes=108)
    ref = file_reader(str(tmp_path / "o_000.tvips"))[0]["data"]
    np.testing.assert_array_equal(ref, data)
    out, _ = read_all(ctx.load("tvips", path=str(tmp_path / "o_001.tvips")))
    np.testing.assert_array_equal(out, ref)


def test_version_1(ctx, tmp_path):
    """Version 1: 12-byte frame headers, whatever the series header's IImgHeaderBytes says."""
    data = np.arange(7 * 3 * 4, dtype="uint8").reshape(7, 3, 4)
    write_tvips(tmp_path / "v1_000.tvips", data, version=1, frames_per_file=3)
    assert os.path.getsize(tmp_path / "v1_001.tvips") == 3 * (12 + 12)
    ds = ctx.load("tvips", path=str(tmp_path / "v1_000.tvips"))
    assert ds.layout_info()["frame_header_bytes"] == 12
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data)


def test_single_file_without_number(ctx, tmp_path):
    data = np.arange(5 * 2 * 3, dtype="uint16").reshape(5, 2, 3)
    write_tvips(tmp_path / "plain_000.tvips", data)
    os.rename(tmp_path / "plain_000.tvips", tmp_path / "plain.tvips")
    assert series_files(str(tmp_path / "plain.tvips")) == [str(tmp_path / "plain.tvips")]
    out, _ = read_all(ctx.load("tvips", path=str(tmp_path / "plain.tvips")))
    np.testing.assert_array_equal(out, data)


# -- scan shape ---------------------------------------------------------------------------------

def write_scan(tmp_path, *, pre=5, rows=6, cols=7, post=3, per_file=10, header=108):
    pos = [(0, 0)] * pre + [(y, x) for y in range(rows) for x in range(cols)] + [(0, 0)] * post
    n = len(pos)
    frames = (np.arange(n * 4 * 5) % 997).reshape(n, 4, 5).astype("uint16")
    write_tvips(tmp_path / "scan_000.tvips", frames, frames_per_file=per_file,
                frame_header_bytes=header, scan_positions=pos)
    return str(tmp_path / "scan_001.tvips"), frames


def test_scan_shape_detected(ctx, tmp_path):
    """The scan starts at the frame at (0, 0) before (0, 1); the row length is the largest
    x before it falls back (LiberTEM's rule; LiberTEM 0.16 gives (5, (6, 7)) for this series
    when it is one file)."""
    path, frames = write_scan(tmp_path)
    ds = ctx.load("tvips", path=path)
    assert ds.shape.to_tuple() == (6, 7, 4, 5) and ds.sync_offset == 5
    assert ds.layout_info()["scan"] == {"detected": True, "sync_offset": 5, "row_length": 7}
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out.reshape(42, 4, 5), frames[5:47])
    sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    np.testing.assert_array_equal(sums, frames[5:47].sum(axis=(1, 2), dtype=np.float64).reshape(6, 7))


def test_scan_overrides(ctx, tmp_path):
    path, frames = write_scan(tmp_path)
    # nav_shape given: the detected sync_offset still applies
    ds = ctx.load("tvips", path=path, nav_shape=(42,))
    assert ds.sync_offset == 5 and ds.shape.nav.to_tuple() == (42,)
    # sync_offset given: rows of the detected length from there
    ds = ctx.load("tvips", path=path, sync_offset=0)
    assert ds.shape.nav.to_tuple() == (50 // 7, 7)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out.reshape(-1, 4, 5), frames[:49])
    ds = ctx.load("tvips", path=path, sync_offset=0, nav_shape=(50,))
    assert ds.layout_info()["scan"]["detected"] is False


def test_no_scan_positions(ctx, tmp_path):
    path, _ = write_scan(tmp_path, header=60)
    ds = ctx.load("tvips", path=path)
    assert ds.shape.nav.to_tuple() == (50,) and ds.sync_offset == 0
    assert "hold no scan position" in ds.layout_info()["scan"]["reason"]
    path, _ = write_scan(tmp_path / "..", pre=0, rows=1, cols=1, post=4)
    ds = ctx.load("tvips", path=str(Path(path).with_name("scan_000.tvips")))
    assert ds.shape.nav.to_tuple() == (5,)


def test_detection_and_info(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    assert detect_format({"path": path}) == "tvips"
    facts = describe(ctx, "auto", {"path": path})
    assert facts["format"] == "tvips" and facts["nav_shape"] == [6, 7] and facts["sync_offset"] == 5
    assert [os.path.basename(f["path"]) for f in facts["layout"]["files"]] == \
        [f"scan_{i:03d}.tvips" for i in range(5)]


# -- bad input ----------------------------------------------------------------------------------

def test_missing_file_in_the_middle(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    os.remove(tmp_path / "scan_002.tvips")
    with pytest.raises(DataSetError, match=r"incomplete: 'scan_002\.tvips' is missing, but "
                                           r"'scan_004\.tvips' exists"):
        ctx.load("tvips", path=path)


def test_missing_first_file(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    os.remove(tmp_path / "scan_000.tvips")
    with pytest.raises(DataSetError, match=r"'scan_000\.tvips' \(the first file, which holds the "
                                           r"series header\) is missing"):
        ctx.load("tvips", path=path)


def test_truncated_files(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    last = tmp_path / "scan_004.tvips"
    os.truncate(last, os.path.getsize(last) - 3)
    with pytest.raises(DataSetError, match=r"scan_004\.tvips' \(the last of 5 files in the series\) "
                                           r"is truncated.*9 whole frames.*allow_partial=True"):
        ctx.load("tvips", path=path)
    ds = ctx.load("tvips", path=path, allow_partial=True, nav_shape=(49,))
    assert ds.image_count == 49
    middle = tmp_path / "scan_001.tvips"
    os.truncate(middle, os.path.getsize(middle) - 1)
    with pytest.raises(DataSetError, match=r"scan_001\.tvips' \(file 2 of 5 in the series\) is "
                                           r"truncated.*every file but the last must hold whole frames"):
        ctx.load("tvips", path=path, allow_partial=True)


def _patch(path, offset, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.array([value], "<i4").tobytes())


def test_header_does_not_parse(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    _patch(tmp_path / "scan_000.tvips", 0, 512)
    with pytest.raises(DataSetError, match=r"scan_000\.tvips.*series header does not parse.*found "
                                           r"size 512 and version 2"):
        ctx.load("tvips", path=path)
    short = tmp_path / "short_000.tvips"
    short.write_bytes(b"\x00\x01\x00\x00")
    with pytest.raises(DataSetError, match=r"short_000\.tvips.*does not parse: it needs 256 bytes"):
        ctx.load("tvips", path=str(short))


@pytest.mark.parametrize("bpp", [12, 32])
def test_unsupported_depth(ctx, tmp_path, bpp):
    path, _ = write_scan(tmp_path)
    _patch(tmp_path / "scan_000.tvips", 16, bpp)
    with pytest.raises(DataSetError, match=rf"scan_000\.tvips.*{bpp} bits per pixel are not read; "
                                           r"expected 8 or 16"):
        ctx.load("tvips", path=path)


def test_wrong_shapes(ctx, tmp_path):
    path, _ = write_scan(tmp_path)
    with pytest.raises(DataSetError, match=r"scan_000\.tvips.*sig_shape \(3, 3\) has 9 pixels"):
        ctx.load("tvips", path=path, sig_shape=(3, 3))
    with pytest.raises(DataSetError, match=r"scan_000\.tvips.*holds 50 frames.*nav_shape \(8, 8\)"):
        ctx.load("tvips", path=path, nav_shape=(8, 8), sync_offset=0)
    ds = ctx.load("tvips", path=path, sig_shape=(20,), nav_shape=(50,), sync_offset=0)
    out, _ = read_all(ds)
    assert out.shape == (50, 20)
