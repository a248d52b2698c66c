"""The mrc format: the conformance suite on files written by mrcfile (image stacks, 1D frames,
volume stacks, every mode in both byte orders), the real sample file against mrcfile and
rosettasciio, extended headers, volume stacks, bad input and the install hint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from udfkit.cli.info import describe
from udfkit.errors import DataSetError
from udfkit.io.formats import detect_format
from udfkit.io.formats.mrc import MRCFormat
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def write_mrc(path, data, *, extended=None):
    """Write ``data`` with mrcfile, in the byte order of its dtype (mrcfile keeps it); 4D data
    become a volume stack."""
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(np.asarray(data))
        if extended is not None:
            mrc.set_extended_header(extended)
    return str(path)


def check_reads(ctx, ds, frames):
    """Tiles equal ``frames``; SumUDF and SumSigUDF equal numpy."""
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out.reshape(frames.shape), frames)
    res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    wide = frames.astype(np.complex128 if frames.dtype.kind == "c" else np.float64)
    np.testing.assert_allclose(res_sum["intensity"].data, wide.sum(axis=0))
    np.testing.assert_allclose(res_sig["intensity"].data.reshape(-1),
                               wide.reshape(len(frames), -1).sum(axis=1))


# -- the conformance suite --------------------------------------------------------------------


class TestMRC(DataSetTests):
    """Every mode mrcfile writes, little- and big-endian; frames of 1, 2 and 3 axes (3: the
    volumes of a volume stack)."""

    format = "mrc"
    dtypes = ("int8", "int16", ">i2", "float32", ">f4", "complex64", "uint16", ">u2", "float16")
    io_backends = BACKENDS
    sig_dims = (1, 2, 3)
    # 9 dtypes x 3 backends of tile tests: fewer examples each still draw over a hundred cases
    max_examples = 5

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:data.ndim - sig_dims]
        sig = data.shape[data.ndim - sig_dims:]
        frames = data.reshape((-1,) + sig)
        if sig_dims == 1:
            # sections of one row; sig_shape makes the rows the frames
            path = write_mrc(tmp_path / "rows.mrc", frames.reshape(-1, 1, sig[0]))
            return dict(path=path, nav_shape=nav, sig_shape=sig)
        if sig_dims == 3:
            path = write_mrc(tmp_path / "volumes.mrc", frames)
            return dict(path=path, nav_shape=nav, sig_dims=3)
        path = write_mrc(tmp_path / "stack.mrcs", frames)
        return dict(path=path, nav_shape=nav)


# -- the real sample file ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_file_equals_mrcfile(inline_ctx, backend):
    path = fixture("mrc", "Custom_movie.mrc")
    ds = inline_ctx.load("mrc", path=path, io_backend=backend, num_partitions=3)
    with mrcfile.mmap(path, mode="r") as mrc:
        ref = np.array(mrc.data)
    assert ds.shape.to_tuple() == ref.shape == (30, 16, 16)
    assert ds.dtype == ref.dtype == np.dtype("uint16")
    check_reads(inline_ctx, ds, ref)


def test_sample_file_equals_rosettasciio(inline_ctx):
    from rsciio.mrc import file_reader

    path = fixture("mrc", "Custom_movie.mrc")
    ref = np.asarray(file_reader(path)[0]["data"])
    ds = inline_ctx.load("auto", path=path)
    assert ds.format_name == "mrc"
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


def test_sample_file_info(inline_ctx):
    path = fixture("mrc", "Custom_movie.mrc")
    facts = describe(inline_ctx, "auto", {"path": path})
    assert facts["format"] == "mrc"
    assert facts["nav_shape"] == [30] and facts["sig_shape"] == [16, 16]
    layout = facts["layout"]
    assert layout["mode"] == "6 (uint16)" and layout["data_offset"] == 1024
    assert layout["header_shape"] == "nx=16, ny=16, nz=30, mz=30"
    assert layout["byte_order"] == "little-endian"


# -- layouts ----------------------------------------------------------------------------------


def frames_of(shape=(7, 5, 6), dtype="int16", seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(-100, 100, size=shape).astype(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_extended_header(inline_ctx, tmp_path, backend):
    """Data after an extended header of nsymbt bytes (not a multiple of the frame size)."""
    data = frames_of()
    ext = np.arange(333, dtype="uint8")
    path = write_mrc(tmp_path / "ext.mrc", data, extended=ext)
    with mrcfile.open(path) as mrc:
        assert int(mrc.header.nsymbt) == 333
        ref = np.array(mrc.data)
    ds = inline_ctx.load("mrc", path=path, io_backend=backend, num_partitions=2)
    assert ds.layout_info()["data_offset"] == 1024 + 333
    check_reads(inline_ctx, ds, ref)


def test_volume_stack_default_shape(inline_ctx, tmp_path):
    data = frames_of((3, 4, 5, 6), "float32")
    path = write_mrc(tmp_path / "vs.mrc", data)
    with mrcfile.open(path) as mrc:
        assert mrc.is_volume_stack()
    ds = inline_ctx.load("mrc", path=path)
    assert ds.shape.to_tuple() == (3, 4, 5, 6) and ds.shape.sig.dims == 2
    assert ds.layout_info()["kind"] == "volume stack"
    check_reads(inline_ctx, ds, data.reshape(12, 5, 6))
    vol = inline_ctx.load("mrc", path=path, sig_dims=3)
    assert vol.shape.to_tuple() == (3, 4, 5, 6) and vol.shape.sig.dims == 3
    check_reads(inline_ctx, vol, data)


def test_single_image(inline_ctx, tmp_path):
    data = frames_of((5, 6), "uint16")
    path = write_mrc(tmp_path / "one.mrc", data)
    ds = inline_ctx.load("mrc", path=path)
    assert ds.shape.to_tuple() == (1, 5, 6)
    check_reads(inline_ctx, ds, data[None])


def test_sig_shape_reshape(inline_ctx, tmp_path):
    data = frames_of((6, 4, 5))
    path = write_mrc(tmp_path / "r.mrc", data)
    ds = inline_ctx.load("mrc", path=path, nav_shape=(2, 3), sig_shape=(20,))
    check_reads(inline_ctx, ds, data.reshape(6, 20))


def test_big_endian_keeps_byte_order(inline_ctx, tmp_path):
    data = frames_of(dtype=">f4")
    path = write_mrc(tmp_path / "be.mrc", data)
    with mrcfile.open(path) as mrc:
        assert mrc.data.dtype == np.dtype(">f4")
    ds = inline_ctx.load("mrc", path=path)
    assert ds.dtype == np.dtype(">f4")
    assert ds.layout_info()["byte_order"] == "big-endian"
    check_reads(inline_ctx, ds, data.astype("<f4"))


def test_auto_and_guess(tmp_path):
    path = write_mrc(tmp_path / "noext.dat", frames_of())
    assert MRCFormat.guess_can_open(path) == 1.0
    assert detect_format({"path": path}) == "mrc"
    other = tmp_path / "not.mrc"
    other.write_bytes(b"\0" * 2000)
    assert MRCFormat.guess_can_open(str(other)) == 0.5
    assert MRCFormat.guess_can_open(str(tmp_path)) == 0.0


# -- bad input --------------------------------------------------------------------------------


def test_truncated(inline_ctx, tmp_path):
    data = frames_of((7, 5, 6))
    path = write_mrc(tmp_path / "cut.mrc", data)
    frame = 5 * 6 * 2
    os.truncate(path, 1024 + 4 * frame + 7)
    with pytest.raises(DataSetError, match=r"cut\.mrc.*truncated.*\(7, 5, 6\).*4 whole frames"):
        inline_ctx.load("mrc", path=path)
    ds = inline_ctx.load("mrc", path=path, allow_partial=True)
    assert ds.image_count == 4
    res = inline_ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    np.testing.assert_array_equal(res.valid_mask, [True] * 4 + [False] * 3)
    np.testing.assert_allclose(res.data[:4], data[:4].reshape(4, -1).sum(axis=1))


@pytest.mark.parametrize("content", [b"", b"\0" * 100, b"\0" * 2048, b"x" * 1024])
def test_header_does_not_parse(inline_ctx, tmp_path, content):
    path = tmp_path / "bad.mrc"
    path.write_bytes(content)
    with pytest.raises(DataSetError, match=r"bad\.mrc.*no valid MRC header.*expected the map ID"):
        inline_ctx.load("mrc", path=str(path))


def _patch_int32(path, offset, value):
    with mrcfile.open(path) as mrc:
        order = mrc.header.mode.dtype.byteorder
    order = "<" if order in "=|" and sys.byteorder == "little" else (">" if order in "=|" else order)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(np.array(value, dtype=f"{order}i4").tobytes())


@pytest.mark.parametrize(("mode", "name"), [(3, "complex int16"), (101, "4-bit"), (9, "")])
def test_unsupported_mode(inline_ctx, tmp_path, mode, name):
    path = write_mrc(tmp_path / "mode.mrc", frames_of())
    _patch_int32(path, 12, mode)  # the mode word is the 4th int32 of the header
    with pytest.raises(DataSetError, match=rf"mode\.mrc.* has mode {mode}.*{name}.*expected one of the "
                                           r"modes 0 \(int8\)"):
        inline_ctx.load("mrc", path=path)


def test_empty_size_in_header(inline_ctx, tmp_path):
    path = write_mrc(tmp_path / "zero.mrc", frames_of())
    _patch_int32(path, 8, 0)  # nz
    with pytest.raises(DataSetError, match=r"zero\.mrc.*nz = 6, 5, 0.*expected positive"):
        inline_ctx.load("mrc", path=path)


def test_sig_shape_that_does_not_fit(inline_ctx, tmp_path):
    path = write_mrc(tmp_path / "s.mrc", frames_of((7, 5, 6)))
    with pytest.raises(DataSetError, match=r"s\.mrc.*not a whole number of frames of sig_shape \(4, 4\)"):
        inline_ctx.load("mrc", path=path, sig_shape=(4, 4))


def test_nav_shape_too_large(inline_ctx, tmp_path):
    path = write_mrc(tmp_path / "n.mrc", frames_of((7, 5, 6)))
    with pytest.raises(DataSetError, match=r"n\.mrc.*nav_shape \(3, 3\)"):
        inline_ctx.load("mrc", path=path, nav_shape=(3, 3))


def test_missing_file(inline_ctx, tmp_path):
    with pytest.raises(DataSetError, match=r"mrc file .*nothere\.mrc.* does not exist"):
        inline_ctx.load("mrc", path=str(tmp_path / "nothere.mrc"))


def test_missing_mrcfile_names_the_extra(inline_ctx, tmp_path, monkeypatch):
    path = write_mrc(tmp_path / "a.mrc", frames_of())
    monkeypatch.setitem(sys.modules, "mrcfile", None)  # import mrcfile now raises ImportError
    with pytest.raises(DataSetError, match=r"needs the Python package 'mrcfile'.*udfkit\[mrc\]"):
        inline_ctx.load("mrc", path=path)


@pytest.mark.parametrize("dtype", ["int16", ">i2"])
def test_machine_stamp_of_zeros_is_read_with_a_warning(inline_ctx, tmp_path, dtype):
    """Some older writers leave the machine stamp zero: the byte order in which the mode word
    is valid is taken (as mrcfile's permissive mode does), with a warning naming the file."""
    from udfkit.errors import UdfkitWarning

    data = frames_of(dtype=dtype)
    path = write_mrc(tmp_path / "stamp.mrc", data)
    with open(path, "r+b") as f:
        f.seek(212)  # machst
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="machine stamp"):
        mrcfile.open(path, header_only=True)  # the strict parser refuses it
    with pytest.warns(UdfkitWarning, match=r"stamp\.mrc.*machine stamp.*reading it as "
                                           rf"{'big' if dtype[0] == '>' else 'little'}-endian"):
        ds = inline_ctx.load("mrc", path=path)
    assert ds.dtype == np.dtype(dtype)
    check_reads(inline_ctx, ds, data.astype("=i2"))
