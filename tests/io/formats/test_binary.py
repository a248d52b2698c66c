"""The binary format (Thunder's image stacks): the conformance suite on stacks written by
:func:`write_binary_stack`, stacks written the way Thunder 1.x (``shape``, C order) and 0.x
(``dims``, first dimension fastest) write them, the writer, bad input, open files, and
Thunder's mouse example checked against numpy reading its bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats import detect_format
from udfkit.io.formats.binary import BinaryFormat, BinaryStackWriter, write_binary_stack
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).parents[3] / ".." / "shared" / "fixtures"
BACKENDS = ("mmap", "buffered", "direct")


def fixture(*parts) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES.joinpath(*parts))


def bin_files(directory) -> list:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".bin"))


class TestBinary(DataSetTests):
    format = "binary"
    dtypes = ("uint8", ">u2", "int16", ">i4", "float32", ">f8", "complex64")
    io_backends = BACKENDS
    sig_dims = (1, 2, 3)

    def write(self, tmp_path, data, *, sig_dims):
        directory = tmp_path / "stack"
        write_binary_stack(directory, data, sig_dims=sig_dims)
        return dict(path=str(directory), nav_shape=data.shape[:data.ndim - sig_dims])

    def corrupt(self, params):
        files = bin_files(params["path"])
        middle = files[len(files) // 2]
        os.truncate(middle, os.path.getsize(middle) // 2)

    def file_names(self, params):
        return [os.path.basename(p) for p in bin_files(params["path"])]


# -- Thunder's conventions --------------------------------------------------------------------


def thunder1_tobinary(directory, images, prefix="image"):
    """What Thunder >= 1.0's ``tobinary`` writes: ``img.copy()`` (C order) per file, and
    ``conf.json`` with ``shape`` and ``str(dtype)``, plus ``SUCCESS``."""
    os.mkdir(directory)
    for key, img in enumerate(images):
        with open(os.path.join(directory, f"{prefix}-{key:05d}.bin"), "wb") as f:
            f.write(img.copy())
    with open(os.path.join(directory, "conf.json"), "w") as f:
        f.write(json.dumps({"shape": list(images.shape[1:]), "dtype": str(images.dtype)}, indent=2))
    open(os.path.join(directory, "SUCCESS"), "w").close()


def thunder0_save_binary(directory, images, prefix="image"):
    """What Thunder 0.x's ``saveAsBinaryImages`` writes: ``img.transpose().copy()`` per file
    and ``conf.json`` with ``dims`` = the image shape (read back with order='F')."""
    os.mkdir(directory)
    for key, img in enumerate(images):
        with open(os.path.join(directory, f"{prefix}-{key:05d}.bin"), "wb") as f:
            f.write(img.transpose().copy())
    with open(os.path.join(directory, "conf.json"), "w") as f:
        json.dump({"dims": list(images.shape[1:]), "dtype": str(images.dtype)}, f, indent=2)


def images_of(n=5, shape=(3, 4), dtype="int16", seed=0):
    return np.random.default_rng(seed).integers(-100, 100, size=(n,) + shape).astype(dtype)


def check_reads(ctx, ds, frames):
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out.reshape(frames.shape), frames)
    res_sum, res_sig = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    wide = frames.astype(np.float64)
    np.testing.assert_allclose(res_sum["intensity"].data, wide.sum(axis=0))
    np.testing.assert_allclose(res_sig["intensity"].data.reshape(-1),
                               wide.reshape(len(frames), -1).sum(axis=1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_thunder1_stack(inline_ctx, tmp_path, backend):
    """``shape`` in conf.json: the bytes are the image in C order."""
    images = images_of(shape=(3, 4, 2), dtype=">f4")
    thunder1_tobinary(tmp_path / "s", images)
    ds = inline_ctx.load("auto", path=str(tmp_path / "s"), io_backend=backend)
    assert ds.format_name == "binary" and ds.shape.to_tuple() == (5, 3, 4, 2)
    assert ds.dtype == np.dtype(">f4")
    # numpy reading the bytes as Thunder 1.x frombinary does
    ref = np.stack([np.fromfile(p, dtype=">f4").reshape((3, 4, 2), order="C")
                    for p in bin_files(tmp_path / "s")])
    np.testing.assert_array_equal(ref, images)
    check_reads(inline_ctx, ds, ref)


def test_thunder0_stack_dims_are_fastest_first(inline_ctx, tmp_path):
    """``dims`` in conf.json (Thunder 0.x): first dimension fastest, so a frame is the
    transpose of Thunder's image, C order over the reversed dims."""
    images = images_of(shape=(3, 4))
    thunder0_save_binary(tmp_path / "s", images)
    ds = inline_ctx.load("binary", path=str(tmp_path / "s"))
    assert ds.shape.sig.to_tuple() == (4, 3)
    thunder0 = np.stack([np.fromfile(p, dtype="int16").reshape((3, 4), order="F")
                         for p in bin_files(tmp_path / "s")])
    np.testing.assert_array_equal(thunder0, images)
    check_reads(inline_ctx, ds, thunder0.transpose(0, 2, 1))


def test_writer_matches_thunder(tmp_path):
    """write_binary_stack writes byte for byte what Thunder's tobinary writes."""
    images = images_of(n=3, shape=(2, 5), dtype="uint16")
    thunder1_tobinary(tmp_path / "thunder", images)
    assert write_binary_stack(tmp_path / "ours", images) == 3
    theirs, ours = sorted(os.listdir(tmp_path / "thunder")), sorted(os.listdir(tmp_path / "ours"))
    assert theirs == ours
    for name in ours:
        assert (tmp_path / "ours" / name).read_bytes() == (tmp_path / "thunder" / name).read_bytes()


def test_writer_pieces_and_wide_numbers(tmp_path):
    w = BinaryStackWriter(tmp_path / "s", sig_shape=(2, 2), dtype="float32", count=4, prefix="t")
    w.create()
    w.write(2, np.full((2, 2, 2), 2.5))
    w.write(0, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="outside 0..3"):
        w.write(3, np.zeros((2, 2, 2)))
    w.finish()
    assert sorted(os.listdir(tmp_path / "s")) == ["SUCCESS", "conf.json", "t-00000.bin", "t-00001.bin",
                                                 "t-00002.bin", "t-00003.bin"]
    assert BinaryStackWriter("x", sig_shape=(1,), dtype="u1", count=123_456).file_name(7) \
        == "image-000007.bin"  # sorted names stay in frame order past 99999


def test_writer_refuses_a_full_directory(tmp_path):
    write_binary_stack(tmp_path / "s", images_of(n=3))
    (tmp_path / "s" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_binary_stack(tmp_path / "s", images_of(n=2))
    write_binary_stack(tmp_path / "s", images_of(n=2, seed=1), overwrite=True)
    assert sorted(os.listdir(tmp_path / "s")) == ["SUCCESS", "conf.json", "image-00000.bin",
                                                 "image-00001.bin", "keep.txt"]


def test_export_roundtrip(inline_ctx, tmp_path):
    data = images_of(n=6, shape=(4, 4), dtype="uint16").reshape(2, 3, 4, 4)
    write_binary_stack(tmp_path / "s", data, sig_dims=2)
    ds = inline_ctx.load("binary", path=str(tmp_path / "s" / "conf.json"), nav_shape=(2, 3))
    check_reads(inline_ctx, ds, data.reshape(6, 4, 4))


# -- without conf.json, overrides -------------------------------------------------------------


def test_no_conf_needs_shape_and_dtype(inline_ctx, tmp_path):
    images = images_of(shape=(3, 4))
    d = tmp_path / "s"
    d.mkdir()
    for i, img in enumerate(images):
        img.tofile(d / f"image-{i:05d}.bin")
    with pytest.raises(DataSetError, match=r"there is no conf\.json; pass sig_shape"):
        inline_ctx.load("binary", path=str(d))
    with pytest.raises(DataSetError, match="no dtype.*dtype='int16'"):
        inline_ctx.load("binary", path=str(d), sig_shape=(3, 4))
    ds = inline_ctx.load("binary", path=str(d), sig_shape=(3, 4), dtype="int16")
    check_reads(inline_ctx, ds, images)
    ds = inline_ctx.load("binary", path=str(d), dims=(4, 3), dtype="int16")
    check_reads(inline_ctx, ds, images)  # dims fastest first: the same C-order frames


def test_overrides_and_reshapes(inline_ctx, tmp_path):
    images = images_of(n=6, shape=(3, 4))
    write_binary_stack(tmp_path / "s", images)
    ds = inline_ctx.load("binary", path=str(tmp_path / "s"), sig_shape=(12,), nav_shape=(2, 3),
                         sync_offset=1)
    out, hits = read_all(ds)
    np.testing.assert_array_equal(out[:5], images[1:].reshape(5, 12))
    assert not hits[5].any()
    # given dims and dtype replace what conf.json says
    as_bytes = inline_ctx.load("binary", path=str(tmp_path / "s"), dims=(8, 3), dtype="uint8")
    assert as_bytes.shape.sig.to_tuple() == (3, 8)
    check_reads(inline_ctx, as_bytes, images.view("uint8").reshape(6, 3, 8))


# -- bad input --------------------------------------------------------------------------------


def test_conf_that_does_not_match_the_files(inline_ctx, tmp_path):
    write_binary_stack(tmp_path / "s", images_of(shape=(3, 4)))
    with open(tmp_path / "s" / "conf.json", "w") as f:
        json.dump({"shape": [4, 4], "dtype": "int16"}, f)
    with pytest.raises(DataSetError) as info:
        inline_ctx.load("binary", path=str(tmp_path / "s"))
    msg = str(info.value)
    assert "image-00000.bin" in msg and "24 bytes" in msg and "32 bytes" in msg


def test_one_short_file(inline_ctx, tmp_path):
    write_binary_stack(tmp_path / "s", images_of(shape=(3, 4)))
    os.truncate(tmp_path / "s" / "image-00003.bin", 10)
    with pytest.raises(DataSetError, match=r"image-00003\.bin.*\(file 4 of 5\) has 10 bytes.*24 bytes"):
        inline_ctx.load("binary", path=str(tmp_path / "s"))


@pytest.mark.parametrize("conf, match", [
    ("not json", r"conf\.json cannot be read"),
    ("[1, 2]", "expected a JSON object"),
    ('{"dtype": "int16"}', "has no 'shape' or 'dims'"),
    ('{"shape": [3, 4], "dtype": "int17"}', "dtype"),
    ('{"shape": [3, 0], "dtype": "int16"}', "shape"),
])
def test_bad_conf(inline_ctx, tmp_path, conf, match):
    write_binary_stack(tmp_path / "s", images_of(shape=(3, 4)))
    (tmp_path / "s" / "conf.json").write_text(conf)
    with pytest.raises(DataSetError, match=match):
        inline_ctx.load("binary", path=str(tmp_path / "s"))


def test_bad_paths(inline_ctx, tmp_path):
    with pytest.raises(DataSetFileNotFoundError, match="does not exist"):
        inline_ctx.load("binary", path=str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "conf.json").write_text('{"shape": [2, 2], "dtype": "uint8"}')
    with pytest.raises(DataSetError, match=r"holds no \.bin file"):
        inline_ctx.load("binary", path=str(tmp_path / "empty"))
    (tmp_path / "one.bin").write_bytes(b"\0" * 4)
    with pytest.raises(DataSetError, match="expected a directory.*ctx.load\\('raw'"):
        inline_ctx.load("binary", path=str(tmp_path / "one.bin"))


def test_guess_can_open(tmp_path):
    write_binary_stack(tmp_path / "s", images_of(n=2))
    assert BinaryFormat.guess_can_open(str(tmp_path / "s")) == 1.0
    assert BinaryFormat.guess_can_open(str(tmp_path / "s" / "conf.json")) == 0.9
    assert detect_format({"path": str(tmp_path / "s" / "conf.json")}) == "binary"
    # one .bin file is raw's (it claims the extension); only the directory is a stack
    assert BinaryFormat.guess_can_open(str(tmp_path / "s" / "image-00000.bin")) == 0.0
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "a.bin").write_bytes(b"\0")
    assert BinaryFormat.guess_can_open(str(tmp_path / "bare")) == 0.0


def test_no_file_handle_leaks(inline_ctx, tmp_path):
    write_binary_stack(tmp_path / "s", images_of(n=12))
    write_binary_stack(tmp_path / "bad", images_of(n=3))
    os.truncate(tmp_path / "bad" / "image-00001.bin", 3)
    inline_ctx.run_udf(dataset=inline_ctx.load("binary", path=str(tmp_path / "s")), udf=SumUDF())
    before = len(os.listdir("/proc/self/fd"))
    for backend in BACKENDS:
        ds = inline_ctx.load("binary", path=str(tmp_path / "s"), io_backend=backend, num_partitions=3)
        inline_ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
        with pytest.raises(DataSetError):
            inline_ctx.load("binary", path=str(tmp_path / "bad"))
    assert len(os.listdir("/proc/self/fd")) == before


# -- Thunder's mouse example ------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_mouse_images(inline_ctx, backend):
    folder = fixture("thunder", "mouse-images")
    with open(os.path.join(folder, "conf.json")) as f:
        conf = json.load(f)
    assert conf == {"dims": [64, 64], "dtype": "int16"}
    files = bin_files(folder)
    assert len(files) == 500
    # numpy reading the bytes: one int16 image per file; with square dims, Thunder 0.x
    # (order F, then our transpose) and Thunder 1.x (order C) give the same frames
    ref = np.stack([np.fromfile(p, dtype="int16").reshape(64, 64) for p in files])
    thunder0 = np.stack([np.fromfile(p, dtype="int16").reshape((64, 64), order="F") for p in files])
    np.testing.assert_array_equal(ref, thunder0.transpose(0, 2, 1))
    ds = inline_ctx.load("auto", path=folder, io_backend=backend, num_partitions=3)
    assert ds.format_name == "binary" and ds.shape.to_tuple() == (500, 64, 64)
    assert ds.dtype == np.dtype("int16")
    check_reads(inline_ctx, ds, ref)


def test_udfkit_info_on_mouse_images(capsys):
    from udfkit.cli import main

    folder = fixture("thunder", "mouse-images")
    assert main(["info", folder]) == 0
    out = capsys.readouterr().out
    assert "format       binary" in out and "nav (500,) x sig (64, 64)" in out
    assert "4096000 bytes" in out


def test_partitions_of_a_bounded_number_of_files(inline_ctx, tmp_path):
    """The backends open all files of a partition at once: a stack of many one-frame files
    is cut into partitions of at most FILES_PER_PARTITION files (unless num_partitions says
    otherwise)."""
    from udfkit.io.formats._common import FILES_PER_PARTITION

    n = 2 * FILES_PER_PARTITION + 10
    images = images_of(n=n, shape=(2, 2))
    write_binary_stack(tmp_path / "s", images)
    ds = inline_ctx.load("binary", path=str(tmp_path / "s"))
    bounds = ds.partition_bounds()
    assert len(bounds) >= 3 and max(b - a for a, b in bounds) <= FILES_PER_PARTITION
    assert inline_ctx.load("binary", path=str(tmp_path / "s"), num_partitions=1).get_num_partitions() == 1
    check_reads(inline_ctx, ds, images)
