"""The tiff format: the conformance suite on files written by tifffile (one multi-page file,
a list of one-page files, compressed pages), the native and the decode paths, stacks as
directories and globs, nplanes volumes, bad input, open files, and real files (Thunder's
fish stack, an LZW file) checked against tifffile."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats import detect_format
from udfkit.io.formats.tiff import TIFFFormat
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def write_pages(path, pages, *, compression=None, contiguous=True, descriptions=None):
    """Write ``pages`` (n, h, w) page by page (so that tiny pages stay pages), in the byte
    order of their dtype; ``contiguous=False`` puts an IFD between pages."""
    pages = np.asarray(pages)
    byteorder = ">" if pages.dtype.byteorder == ">" else "<"
    with tifffile.TiffWriter(path, byteorder=byteorder) as tw:
        for i, page in enumerate(pages):
            kw = {}
            if descriptions is not None:
                kw["description"] = descriptions[i]
            tw.write(page, photometric="minisblack", compression=compression,
                     contiguous=contiguous and descriptions is None and compression is None,
                     metadata=None, **kw)
    return str(path)


def as_pages(data, sig_dims):
    """``(pages, extra load parameters)`` for frames of 1, 2 or 3 dimensions."""
    sig = data.shape[data.ndim - sig_dims:]
    frames = data.reshape((-1,) + sig)
    if sig_dims == 1:  # a page is 2D: a row, reshaped back by sig_shape
        return frames.reshape(-1, 1, sig[0]), {"sig_shape": sig}
    if sig_dims == 3:  # volumes of sig[0] pages
        return frames.reshape((-1,) + sig[1:]), {"nplanes": sig[0]}
    return frames, {}


def count_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def cut_in_the_pixels(path):
    """Truncate a TIFF in the middle of its page data (tifffile writes the IFDs of later pages
    after the data, so cutting the file in half may leave every pixel intact)."""
    with tifffile.TiffFile(path) as tif:
        pages = list(tif.pages)
        page = pages[len(pages) // 2]
        cut = page.dataoffsets[0] + max(1, page.databytecounts[0] // 2)
    os.truncate(path, cut)


class _TIFFSuite(DataSetTests):
    format = "tiff"

    def corrupt(self, params):
        paths = params["path"] if isinstance(params["path"], list) else [params["path"]]
        cut_in_the_pixels(paths[len(paths) // 2])


# -- the conformance suite --------------------------------------------------------------------


class TestTIFFFile(_TIFFSuite):
    """One multi-page file, uncompressed: the native read path."""

    dtypes = ("uint8", "uint16", ">u2", ">i4", "float32", ">f8", "complex64")
    io_backends = BACKENDS
    sig_dims = (1, 2, 3)
    executors = ("inline", "threads", "processes", "dask")

    def write(self, tmp_path, data, *, sig_dims):
        pages, extra = as_pages(data, sig_dims)
        path = write_pages(tmp_path / "stack.tif", pages)
        return dict(path=path, nav_shape=data.shape[:data.ndim - sig_dims], **extra)


class TestTIFFFileList(_TIFFSuite):
    """A list of one-page files, uncompressed: one file layout per frame."""

    dtypes = ("uint16", ">f4")
    io_backends = BACKENDS
    executors = ("inline", "processes")
    max_examples = 5

    def write(self, tmp_path, data, *, sig_dims):
        frames = data.reshape((-1,) + data.shape[-2:])
        paths = [write_pages(tmp_path / f"f{i:03d}.tif", frame[None]) for i, frame in enumerate(frames)]
        return dict(path=paths, nav_shape=data.shape[:-2])


class TestTIFFCompressed(_TIFFSuite):
    """One file of deflate-compressed pages: decoded by tifffile on the worker."""

    dtypes = ("uint8", "uint16", "int32", "float32", "float64")
    io_backends = ()
    sig_dims = (2, 3)
    executors = ("inline", "processes", "dask")
    max_examples = 5

    def write(self, tmp_path, data, *, sig_dims):
        pages, extra = as_pages(data, sig_dims)
        path = write_pages(tmp_path / "stack.tif", pages, compression="zlib")
        return dict(path=path, nav_shape=data.shape[:data.ndim - sig_dims], **extra)


# -- reading paths ----------------------------------------------------------------------------


def pages_of(n=6, shape=(5, 7), dtype="uint16", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 200, size=(n,) + shape).astype(dtype)


def check_reads(ctx, ds, frames, backends_apply=True):
    """Tiles equal ``frames`` and SumUDF / SumSigUDF equal numpy."""
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out.reshape(frames.shape), frames)
    res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    wide = frames.astype(np.float64)
    np.testing.assert_allclose(res_sum["intensity"].data, wide.sum(axis=0))
    np.testing.assert_allclose(res_sig["intensity"].data.reshape(-1),
                               wide.reshape(len(frames), -1).sum(axis=1))


@pytest.mark.parametrize("compression", ["lzw", "zlib", "zstd", "packbits"])
def test_compressed_pages_equal_tifffile(inline_ctx, tmp_path, compression):
    path = write_pages(tmp_path / "c.tif", pages_of(dtype="uint8" if compression == "packbits"
                                                          else "uint16"), compression=compression)
    ds = inline_ctx.load("tiff", path=path, num_partitions=2)
    info = ds.layout_info()
    assert info["read_path"] == "decoded" and info["compression"] != "none"
    check_reads(inline_ctx, ds, tifffile.imread(path))


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_big_endian(inline_ctx, tmp_path, compression):
    """Uncompressed big-endian pages keep their stored dtype; decoded ones come out native."""
    data = pages_of(dtype=">u2")
    path = write_pages(tmp_path / "be.tif", data, compression=compression)
    with tifffile.TiffFile(path) as tif:
        assert tif.byteorder == ">"
    ds = inline_ctx.load("tiff", path=path)
    assert ds.dtype == (np.dtype(">u2") if compression is None else np.dtype("<u2"))
    check_reads(inline_ctx, ds, tifffile.imread(path))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pages_with_ifds_between_them(inline_ctx, tmp_path, backend):
    """An IFD after every page: frames at a fixed stride larger than a frame."""
    data = pages_of(n=5)
    path = write_pages(tmp_path / "gaps.tif", data, contiguous=False)
    with tifffile.TiffFile(path) as tif:
        offsets = [p.dataoffsets[0] for p in tif.pages]
    assert len(set(np.diff(offsets))) == 1 and offsets[1] - offsets[0] > data[0].nbytes
    ds = inline_ctx.load("tiff", path=path, io_backend=backend)
    assert ds.layout_info()["read_path"] == "native"
    assert ds.fileset.files[0].frame_footer_bytes > 0
    check_reads(inline_ctx, ds, tifffile.imread(path))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pages_at_no_fixed_stride(inline_ctx, tmp_path, backend):
    """IFDs of different sizes between the pages: a table of frame offsets, still native."""
    data = pages_of(n=5)
    path = write_pages(tmp_path / "irregular.tif", data,
                       descriptions=["x" * (7 * i * i + 1) for i in range(5)])
    ds = inline_ctx.load("tiff", path=path, io_backend=backend, num_partitions=2)
    info = ds.layout_info()
    assert info["read_path"] == "native" and "offset_tables" in info
    assert ds.fileset.files[0].frame_offsets is not None
    check_reads(inline_ctx, ds, tifffile.imread(path))


def test_bigtiff(inline_ctx, tmp_path):
    path = str(tmp_path / "big.tif")
    data = pages_of()
    tifffile.imwrite(path, data, bigtiff=True, photometric="minisblack")
    assert TIFFFormat.guess_can_open(path) == 1.0
    ds = inline_ctx.load("auto", path=path)
    assert ds.format_name == "tiff" and ds.layout_info()["read_path"] == "native"
    check_reads(inline_ctx, ds, tifffile.imread(path))


def test_declared_shape_is_the_default_nav_shape(inline_ctx, tmp_path):
    """A file tifffile wrote from a (4, 3, h, w) array declares its nav shape."""
    path = str(tmp_path / "shaped.tif")
    data = pages_of(n=12).reshape(4, 3, 5, 7)
    tifffile.imwrite(path, data, photometric="minisblack")
    ds = inline_ctx.load("tiff", path=path)
    assert ds.shape.nav.to_tuple() == (4, 3)
    assert inline_ctx.load("tiff", path=path, nav_shape=(12,)).shape.nav.to_tuple() == (12,)
    vol = inline_ctx.load("tiff", path=path, nplanes=3)
    assert vol.shape.to_tuple() == (4, 3, 5, 7) and vol.shape.sig_dims == 3


# -- stacks of files --------------------------------------------------------------------------


def write_stack(directory, data, names=None, **kw):
    os.makedirs(directory, exist_ok=True)
    names = names or [f"img{i:02d}.tif" for i in range(len(data))]
    return [write_pages(os.path.join(directory, n), page[None], **kw) for n, page in zip(names, data)]


@pytest.mark.parametrize("form", ["directory", "glob", "list"])
def test_stack_forms(inline_ctx, tmp_path, form):
    """Files sorted by name for a directory and a glob, in the given order for a list."""
    data = pages_of(n=4)
    names = ["b10.tif", "b02.tif", "a.tif", "b1.tif"]
    paths = write_stack(tmp_path / "s", data, names)
    (tmp_path / "s" / "notes.txt").write_text("not a frame")
    order = sorted(range(4), key=lambda i: names[i])
    if form == "directory":
        path, want = str(tmp_path / "s"), data[order]
    elif form == "glob":
        path, want = str(tmp_path / "s" / "*.tif"), data[order]
    else:
        path, want = paths, data
    assert detect_format({"path": path}) == "tiff"
    ds = inline_ctx.load("auto", path=path)
    assert ds.layout_info()["files"] == 4 and len(ds.fileset.files) == 4
    check_reads(inline_ctx, ds, want)


@pytest.mark.parametrize("compression", [None, "packbits"])
def test_nplanes_volumes_per_file(inline_ctx, tmp_path, compression):
    """Thunder's fromtif(nplanes=2): files of 4 pages are two volumes each."""
    data = pages_of(n=12, dtype="uint8")
    for i in range(3):
        write_pages(tmp_path / f"t{i}.tif", data[4 * i:4 * i + 4], compression=compression)
    ds = inline_ctx.load("tiff", path=str(tmp_path), nplanes=2)
    assert ds.shape.to_tuple() == (6, 2, 5, 7) and ds.shape.sig_dims == 3
    assert ds.layout_info()["read_path"] == ("native" if compression is None else "decoded")
    check_reads(inline_ctx, ds, data.reshape(6, 2, 5, 7))
    assert inline_ctx.load("tiff", path=str(tmp_path), nplanes=4).shape.to_tuple() == (3, 4, 5, 7)


def test_volume_pages_not_back_to_back_are_decoded(inline_ctx, tmp_path):
    data = pages_of(n=4)
    path = write_pages(tmp_path / "gaps.tif", data, contiguous=False)
    ds = inline_ctx.load("tiff", path=path, nplanes=2)
    assert ds.layout_info()["read_path"] == "decoded"
    check_reads(inline_ctx, ds, data.reshape(2, 2, 5, 7))


def test_sync_offset_and_reshape_on_a_stack(inline_ctx, tmp_path):
    data = pages_of(n=6)
    write_stack(tmp_path / "s", data)
    ds = inline_ctx.load("tiff", path=str(tmp_path / "s"), nav_shape=(2, 3), sig_shape=(35,),
                         sync_offset=2)
    out, hits = read_all(ds)
    assert ds.shape.to_tuple() == (2, 3, 35)
    np.testing.assert_array_equal(out[:4], data[2:].reshape(4, 35))
    assert not hits[4:].any()


# -- bad input --------------------------------------------------------------------------------


def test_different_page_shapes_in_a_stack(inline_ctx, tmp_path):
    write_stack(tmp_path / "s", pages_of(n=3))
    write_pages(tmp_path / "s" / "img09.tif", pages_of(n=1, shape=(5, 8)))
    with pytest.raises(DataSetError) as info:
        inline_ctx.load("tiff", path=str(tmp_path / "s"))
    msg = str(info.value)
    assert "img09.tif" in msg and "(5, 7)" in msg and "(5, 8)" in msg


def test_different_page_shape_or_dtype_in_one_file(inline_ctx, tmp_path):
    path = str(tmp_path / "mixed.tif")
    with tifffile.TiffWriter(path) as tw:
        tw.write(pages_of(n=1)[0], photometric="minisblack")
        tw.write(pages_of(n=1, dtype="float32")[0], photometric="minisblack")
    with pytest.raises(DataSetError, match=r"mixed\.tif.*page 1.*uint16.*float32"):
        inline_ctx.load("tiff", path=path)


def test_nplanes_must_divide_the_pages(inline_ctx, tmp_path):
    path = write_pages(tmp_path / "three.tif", pages_of(n=3))
    with pytest.raises(DataSetError, match=r"three\.tif.*3 pages.*nplanes=2"):
        inline_ctx.load("tiff", path=path, nplanes=2)
    with pytest.raises(DataSetError, match="nplanes: expected a positive integer"):
        inline_ctx.load("tiff", path=path, nplanes=0)


def test_sig_shape_must_keep_the_frame_size(inline_ctx, tmp_path):
    path = write_pages(tmp_path / "a.tif", pages_of(n=4))
    with pytest.raises(DataSetError, match=r"a\.tif.*sig_shape \(70,\).*\(5, 7\)"):
        inline_ctx.load("tiff", path=path, sig_shape=(70,))


def test_not_a_tiff(inline_ctx, tmp_path):
    path = tmp_path / "fake.tif"
    path.write_bytes(b"this is no TIFF file at all")
    with pytest.raises(DataSetError, match=r"fake\.tif.*cannot be read as TIFF"):
        inline_ctx.load("tiff", path=str(path))


def test_truncated_file_at_load(inline_ctx, tmp_path):
    path = write_pages(tmp_path / "cut.tif", pages_of(n=6, shape=(30, 30)))
    os.truncate(path, os.path.getsize(path) // 2)
    with pytest.raises(DataSetError, match=r"cut\.tif.*(truncated|damaged)"):
        inline_ctx.load("tiff", path=path)


@pytest.mark.parametrize("path, error, match", [
    ("missing.tif", DataSetFileNotFoundError, "does not exist"),
    ("none-*.tif", DataSetFileNotFoundError, "matches no file"),
    ("empty", DataSetError, "holds no .tif"),
    ([], DataSetError, "empty list"),
])
def test_bad_paths(inline_ctx, tmp_path, path, error, match):
    (tmp_path / "empty").mkdir()
    if isinstance(path, str):
        path = str(tmp_path / path)
    with pytest.raises(error, match=match):
        inline_ctx.load("tiff", path=path)


def test_guess_can_open(tmp_path):
    tif = write_pages(tmp_path / "a.tif", pages_of(n=1))
    assert TIFFFormat.guess_can_open(tif) == 1.0
    renamed = tmp_path / "pages.dat"
    os.rename(tif, renamed)
    assert TIFFFormat.guess_can_open(str(renamed)) == 1.0  # magic, whatever the name
    other = tmp_path / "x.tiff"
    other.write_bytes(b"\0" * 16)
    assert TIFFFormat.guess_can_open(str(other)) == 0.5
    stack = tmp_path / "stack"
    write_stack(stack, pages_of(n=2))
    assert TIFFFormat.guess_can_open(str(stack)) > 0.5
    assert TIFFFormat.guess_can_open(str(stack / "*.tif")) > 0.5
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("x")
    assert TIFFFormat.guess_can_open(str(tmp_path / "plain")) == 0.0


# -- open files -------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_no_file_handle_leaks(inline_ctx, tmp_path, compression):
    data = pages_of(n=8)
    write_stack(tmp_path / "s", data, compression=compression)
    bad = tmp_path / "bad"
    write_stack(bad, data[:2], compression=compression)
    write_pages(bad / "img09.tif", pages_of(n=1, shape=(3, 3)))
    inline_ctx.run_udf(dataset=inline_ctx.load("tiff", path=str(tmp_path / "s")), udf=SumUDF())
    before = count_fds()
    for _ in range(3):
        ds = inline_ctx.load("tiff", path=str(tmp_path / "s"), num_partitions=3)
        inline_ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
        read_all(ds)
        with pytest.raises(DataSetError):
            inline_ctx.load("tiff", path=str(bad))
    assert count_fds() == before


# -- real files -------------------------------------------------------------------------------


def fish_files():
    folder = fixture("thunder", "fish-images")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tif"))


def test_fish_stack_as_pages(inline_ctx):
    files = fish_files()
    want = np.concatenate([tifffile.imread(f) for f in files])
    assert want.shape == (40, 76, 87) and want.dtype == np.uint8
    ds = inline_ctx.load("auto", path=os.path.dirname(files[0]))
    assert ds.format_name == "tiff" and ds.shape.to_tuple() == (40, 76, 87)
    assert ds.layout_info()["compression"] == "packbits"
    check_reads(inline_ctx, ds, want)


@pytest.mark.parametrize("form", ["directory", "glob"])
def test_fish_stack_as_volumes(inline_ctx, form):
    """Thunder's fish example: 20 time points, a volume of 2 planes each."""
    files = fish_files()
    folder = os.path.dirname(files[0])
    path = folder if form == "directory" else os.path.join(folder, "time*.tif")
    ds = inline_ctx.load("tiff", path=path, nplanes=2)
    assert ds.shape.to_tuple() == (20, 2, 76, 87) and ds.shape.sig_dims == 3
    check_reads(inline_ctx, ds, np.stack([tifffile.imread(f) for f in files]))


def test_lzw_fixture(inline_ctx):
    path = fixture("tiff", "dotdot_lzw.tif")
    ds = inline_ctx.load("auto", path=path)
    assert ds.format_name == "tiff" and ds.shape.to_tuple() == (2, 70, 75)
    assert ds.dtype == np.uint8 and ds.layout_info()["compression"] == "lzw"
    check_reads(inline_ctx, ds, tifffile.imread(path))


@pytest.mark.parametrize("parts", [("thunder", "fish-images"), ("thunder", "fish-images", "*.tif"),
                                   ("tiff", "dotdot_lzw.tif")])
def test_udfkit_info_without_flags(parts, capsys):
    from udfkit.cli import main

    path = fixture(*parts)
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert "format       tiff" in out and "compression" in out
    assert f"{os.path.abspath(path)}" in out


def test_io_backend_on_compressed_pages_is_an_error(inline_ctx, tmp_path):
    """As for HDF5 and zarr: pages that tifffile decodes never go through an I/O backend, so
    asking for one is an error naming the compression, not a silent no-op."""
    data = pages_of(n=3)
    path = write_pages(tmp_path / "z.tif", data, compression="zlib")
    assert inline_ctx.load("tiff", path=path).layout_info()["read_path"] == "decoded"
    with pytest.raises(DataSetError, match=r"z\.tif.*io_backend='buffered' does not apply.*compressed pages"):
        inline_ctx.load("tiff", path=path, io_backend="buffered")
