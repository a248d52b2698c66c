"""The mib format (Quantum Detectors Merlin): conformance suite for the decoded and the raw
(bit-packed) layouts, the real sample files against rosettasciio, and bad input."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats._mib_decode import BITS_STORED, RawMIBDecoder, encode_raw
from udfkit.io.formats._mib_write import frame_header
from udfkit.io.formats.mib import write_hdr, write_mib
from udfkit.testing import DataSetTests
from udfkit.testing.formats import FormatCase
from udfkit.testing.profiles import examples
from udfkit.testing.tiles import expected_frames, read_all
from udfkit.udf import SumSigUDF, SumUDF

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "mib"
DEPTH_OF_DTYPE = {"uint8": 6, ">u2": 12, ">u4": 24, "uint16": 12, "uint32": 24}


def _series(tmp_path, frames, *, depth, raw=False, quad=False, nav_shape=None, files=1):
    """Write ``frames`` as a series of ``files`` .mib files (and a .hdr where it can hold the
    nav shape); return the load parameters."""
    n = len(frames)
    files = max(1, min(files, n))
    bounds = np.linspace(0, n, files + 1).astype(int)
    names = []
    for i in range(files):
        name = tmp_path / (f"scan{i + 1}.mib" if files > 1 else "scan.mib")
        write_mib(name, frames[bounds[i]:bounds[i + 1]], depth=depth, raw=raw, quad=quad,
                  first_seq=1 + int(bounds[i]))
        names.append(str(name))
    params = {"path": names[0]}
    nav = tuple(nav_shape) if nav_shape is not None else (n,)
    if len(nav) == 1 or (len(nav) == 2 and nav[0] > 1 and nav[1] > 1):
        write_hdr(tmp_path / "scan.hdr", frames=n, frames_per_trigger=nav[-1], depth=depth, quad=quad)
        params["path"] = str(tmp_path / "scan.hdr")
    else:
        params["nav_shape"] = nav
    WRITTEN[params["path"]] = names
    return params


#: load path -> the .mib files written for it (what corrupt() damages and errors name)
WRITTEN = {}


def _files(params):
    return WRITTEN[params["path"]]


class _MIBSuite(DataSetTests):
    format = "mib"
    io_backends = ("mmap", "buffered", "direct")
    max_examples = 4

    def corrupt(self, params):
        last = _files(params)[-1]
        os.truncate(last, os.path.getsize(last) // 2)

    def file_names(self, params):
        return [os.path.basename(p) for p in _files(params)]


class TestMIBDecoded(_MIBSuite):
    """U08 / U16 / U32 frames (6, 12, 24-bit counters), one file or a series, with a .hdr."""

    dtypes = ("uint8", ">u2", ">u4")

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:-2]
        frames = data.reshape((-1,) + data.shape[-2:])
        files = 1 + len(frames) % 3
        key = data.dtype.str if data.dtype.str[0] == ">" else data.dtype.name
        return _series(tmp_path, frames, depth=DEPTH_OF_DTYPE[key], nav_shape=nav, files=files)


def _widen(case: FormatCase) -> FormatCase:
    """The same case with frames 8 times as wide: raw rows are whole 64-bit words."""
    h, w = case.sig_shape
    return FormatCase(nav_shape=case.nav_shape, sig_shape=(h, 8 * w), dtype=case.dtype,
                      sync_offset=case.sync_offset, num_partitions=case.num_partitions, roi=case.roi,
                      io_backend=case.io_backend, tile_sig=(case.tile_sig[0], 8 * case.tile_sig[1]),
                      depth=case.depth, seed=case.seed)


class TestMIBRaw(_MIBSuite):
    """R64 frames (6, 12, 24-bit counters), one chip or a 2x2 quad where the frame allows."""

    dtypes = ("uint8", "uint16", "uint32")
    # the decoded class covers dask; the decoder travels to workers the same way (cloudpickle)
    executors = ("inline", "threads", "processes")

    def _cases(self, **kwargs):
        return super()._cases(**kwargs).map(_widen)

    def _fixed_case(self, io_backend):
        return _widen(super()._fixed_case(io_backend))

    def write(self, tmp_path, data, *, sig_dims):
        h, w = data.shape[-2:]
        depth = DEPTH_OF_DTYPE[data.dtype.name]
        quad = RawMIBDecoder.check_shape(depth, (h, w), True) is None
        frames = data.reshape((-1, h, w))
        return _series(tmp_path, frames, depth=depth, raw=True, quad=quad, nav_shape=data.shape[:-2],
                       files=1 + len(frames) % 2)


# -- the raw decoder against the numpy encoder --------------------------------------------------


@settings(max_examples=examples(30), deadline=None)
@given(depth=st.sampled_from([1, 6, 12, 24]), quad=st.booleans(), n=st.integers(1, 3),
       rows=st.integers(1, 3), words=st.integers(1, 3), seed=st.integers(0, 2**31),
       out=st.sampled_from(["native", "float32", "float64", "int64"]))
def test_raw_decoder_round_trip(depth, quad, n, rows, words, seed, out):
    per_word = 64 // BITS_STORED[depth]
    h = 2 * rows if quad else rows
    w = (2 if quad else 1) * words * per_word
    frames = np.random.default_rng(seed).integers(0, 1 << depth, size=(n, h, w))
    rec = encode_raw(frames, depth, quad)
    dec = RawMIBDecoder(depth, (h, w), quad)
    assert rec.shape == (n, dec.stored_frame_bytes)
    dest = dec.dtype if out == "native" else np.dtype(out)
    got = np.full((n, h * w), 7, dest)
    # records at odd offsets inside a larger buffer, as a read buffer with headers holds them
    gap = 13
    buf = np.zeros(n * (dec.stored_frame_bytes + gap) + gap, np.uint8)
    offsets = gap + np.arange(n) * (dec.stored_frame_bytes + gap)
    for k in range(n):
        buf[offsets[k]:offsets[k] + dec.stored_frame_bytes] = rec[k]
    dec.decode(buf, offsets, got)
    np.testing.assert_array_equal(got.reshape(frames.shape), frames)


@pytest.mark.parametrize(("depth", "layout"), [
    # bit / byte / 16-bit word positions of pixel 0 and pixel 1 in the first 64-bit word
    (1, [(7, 0b01), (7, 0b10)]),
    (6, [(7, None), (6, None)]),
    (12, [(6, None), (4, None)]),
])
def test_raw_word_layout(depth, layout):
    """The documented layout: 64-bit big-endian words, pixel j in the low bits first."""
    per_word = 64 // BITS_STORED[depth]
    for j, (pos, mask) in enumerate(layout):
        frame = np.zeros((1, 1, per_word), np.uint16)
        frame[0, 0, j] = 1 if depth == 1 else 5
        rec = encode_raw(frame, depth)[0]
        nz = np.flatnonzero(rec)
        if depth == 12:
            assert nz.tolist() == [pos + 1] and rec[pos + 1] == 5  # low byte of a big-endian u16
        elif depth == 6:
            assert nz.tolist() == [pos] and rec[pos] == 5
        else:
            assert nz.tolist() == [pos] and rec[pos] == mask


def test_raw_quad_chip_order():
    """A quad raw row is [chip 4 | chip 3 | chip 2 | chip 1]; chips 3 and 4 rotated by 180°."""
    frame = np.zeros((1, 4, 16), np.uint8)
    frame[0, 0, 0] = 1     # chip 1, top left corner
    frame[0, 0, 15] = 2    # chip 2, top right corner
    frame[0, 3, 0] = 3     # chip 3, bottom left corner -> last pixel of its first raw row
    frame[0, 3, 15] = 4    # chip 4, bottom right corner -> first... of its first raw row
    rec = encode_raw(frame, 6, quad=True)[0].reshape(2, 4, 8)  # raw rows, chips, bytes
    # 6-bit: the bytes of a word are the pixels in reverse order
    assert rec[0, 3, 7] == 1       # chip 1, pixel 0
    assert rec[0, 2, 0] == 2       # chip 2, pixel 7
    assert rec[0, 1, 0] == 3       # chip 3 rotated: frame (3, 0) is its raw row 0, pixel 7
    assert rec[0, 0, 7] == 4       # chip 4 rotated: frame (3, 15) is its raw row 0, pixel 0


# -- 1-bit: values 0/1 do not fit the suite's values, so their own property test ------------------


@settings(max_examples=examples(6), deadline=None)
@given(raw=st.booleans(), quad=st.booleans(), n=st.integers(1, 14), sync=st.integers(-3, 3),
       parts=st.integers(1, 4), backend=st.sampled_from(["mmap", "buffered", "direct"]),
       roi_density=st.sampled_from([None, 0.5]), seed=st.integers(0, 2**31))
def test_one_bit(tmp_path_factory, raw, quad, n, sync, parts, backend, roi_density, seed):
    tmp = tmp_path_factory.mktemp("onebit")
    rng = np.random.default_rng(seed)
    shape = (4, 256) if quad else (3, 128)
    frames = rng.integers(0, 2, size=(n,) + shape).astype(np.uint8)
    params = _series(tmp, frames, depth=1, raw=raw, quad=quad, files=1 + n % 2)
    sync = max(-(n - 1), min(sync, n - 1))
    roi = None if roi_density is None else rng.random(n) < roi_density
    with Context.make_with("inline") as ctx:
        ds = ctx.load("mib", **params, sync_offset=sync, num_partitions=parts,
                      io_backend=backend)
        assert ds.dtype == np.uint8 and ds.shape.sig.to_tuple() == shape
        assert ds.layout_info()["counter_depth"] == 1
        out, hits = read_all(ds, np.dtype("float32"), None, roi)
        ref, processed = expected_frames(frames, n, sync, roi)
        np.testing.assert_array_equal(out[processed], ref[processed])
        assert np.all(hits[processed] == 1) and np.all(hits[~processed] == 0)
        res = ctx.run_udf(dataset=ds, udf=SumUDF(), roi=roi)
        np.testing.assert_array_equal(res["intensity"].data, ref[processed].sum(axis=0))


# -- the real files -------------------------------------------------------------------------------


def _fixture(name):
    if not FIXTURES.is_dir():
        pytest.fail(f"the sample files are missing: expected {FIXTURES} (../shared/fixtures/mib "
                    "next to the repository; see ../shared/fixtures/README.md)")
    return str(FIXTURES / name)


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


DECODED_FIXTURES = [
    ("Single_9_Frame_CounterDepth_1_Rows_256", 1, "uint8", (9,)),
    ("Single_9_Frame_CounterDepth_6_Rows_256", 6, "uint8", (9,)),
    ("Single_9_Frame_CounterDepth_12_Rows_256", 12, ">u2", (9,)),
    ("Single_9_Frame_CounterDepth_24_Rows_256", 24, ">u4", (9,)),
    ("Quad_9_Frame_CounterDepth_12_Rows_256", 12, ">u2", (9,)),
    ("001_4x2_6bit", 6, "uint8", (4, 2)),
]


@pytest.mark.parametrize(("name", "depth", "dtype", "nav"), DECODED_FIXTURES,
                         ids=[f[0] for f in DECODED_FIXTURES])
def test_fixture_against_rosettasciio(ctx, name, depth, dtype, nav):
    """Each decoded sample equals rosettasciio's frames after undoing its row flip
    (file_reader returns np.flip(data, axis=-2) for every layout it reads)."""
    from rsciio.quantumdetector import file_reader, load_mib_data

    path = _fixture(name + ".mib")
    ds = ctx.load("mib", path=path, nav_shape=nav)
    assert ds.dtype.str == np.dtype(dtype).str
    assert ds.layout_info()["counter_depth"] == depth
    ours, _ = read_all(ds, ds.native_dtype)
    theirs = np.asarray(file_reader(path, navigation_shape=nav[::-1] if len(nav) > 1 else None)[0]["data"])
    theirs = theirs.reshape((-1,) + theirs.shape[-2:])
    np.testing.assert_array_equal(ours, theirs[:, ::-1, :])
    # the unflipped frames of load_mib_data, and its per-frame headers
    data, headers = load_mib_data(path, return_headers=True)
    np.testing.assert_array_equal(ours, np.asarray(data).reshape(ours.shape))
    assert len(headers) == ds.image_count
    for k, h in enumerate(headers):
        fields = bytes(h).decode("ascii", "replace").split(",")
        assert int(fields[1]) == k + 1
        assert (int(fields[5]), int(fields[4])) == ds.shape.sig.to_tuple()
    res = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    np.testing.assert_array_equal(res[0]["intensity"].data, ours.astype(np.float64).sum(axis=0))
    np.testing.assert_array_equal(res[1]["intensity"].data.reshape(-1),
                                  ours.reshape(len(ours), -1).astype(np.float64).sum(axis=1))


def test_fixture_hdr_nav_shape(ctx):
    """The .hdr gives the nav shape where it can (9 frames per trigger of 9: one line) and asks
    for nav_shape where it cannot (a pixel trigger: one frame per trigger)."""
    ds = ctx.load("auto", path=_fixture("Single_9_Frame_CounterDepth_12_Rows_256.hdr"))
    assert ds.format_name == "mib" and ds.shape.nav.to_tuple() == (9,)
    with pytest.raises(DataSetError, match=r"001_4x2_6bit\.hdr.*Frames per Trigger = 1.*nav_shape"):
        ctx.load("mib", path=_fixture("001_4x2_6bit.hdr"))
    ds = ctx.load("mib", path=_fixture("001_4x2_6bit.hdr"), nav_shape=(4, 2))
    assert ds.shape.nav.to_tuple() == (4, 2)


def test_fixture_raw_one_bit(ctx):
    """No other reader decodes the raw layout: the 1-bit raw sample is checked against its
    headers and against the decoded 1-bit sample recorded a second later with the same
    settings (same beam, same orientation: the mean images agree, a flipped one does not)."""
    raw = ctx.load("auto", path=_fixture("Single_9_Frame_CounterDepth_1_Rows_256RAW.mib"),
                   nav_shape=(9,))
    info = raw.layout_info()
    assert (info["pixel_type"], info["counter_depth"]) == ("R64", 1)
    assert raw.shape.to_tuple() == (9, 256, 256) and raw.dtype == np.uint8
    # 9 records of a 384-byte header and 256*256 bits
    assert os.path.getsize(_fixture("Single_9_Frame_CounterDepth_1_Rows_256RAW.mib")) == 9 * (384 + 8192)
    dec = ctx.load("mib", path=_fixture("Single_9_Frame_CounterDepth_1_Rows_256.mib"), nav_shape=(9,))
    a, _ = read_all(raw, np.dtype("uint8"))
    b, _ = read_all(dec, np.dtype("uint8"))
    assert set(np.unique(a).tolist()) <= {0, 1}
    np.testing.assert_allclose(a.mean(axis=(1, 2)), b.mean(axis=(1, 2)), rtol=0.02)
    ma, mb = a.mean(axis=0).ravel(), b.mean(axis=0).ravel()
    assert np.corrcoef(ma, mb)[0, 1] > 0.99
    assert np.corrcoef(a.mean(axis=0)[::-1].ravel(), mb)[0, 1] < 0.9
    assert np.corrcoef(a.mean(axis=0)[:, ::-1].ravel(), mb)[0, 1] < 0.9
    res = ctx.run_udf(dataset=raw, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, a.astype(np.float64).sum(axis=0))


def test_fixture_describe(ctx):
    from udfkit.cli.info import describe

    facts = describe(ctx, "auto", {"path": _fixture("Quad_9_Frame_CounterDepth_12_Rows_256.mib"),
                                   "nav_shape": (3, 3)})
    assert facts["format"] == "mib" and facts["sig_shape"] == [512, 512]
    lay = facts["layout"]
    assert lay["pixel_type"] == "U16" and lay["counter_depth"] == 12
    assert lay["chips"] == "4 in layout 2x2" and lay["files"] == 1
    assert "read in place" in lay["decoding"]


# -- series -------------------------------------------------------------------------------------


def test_series_and_disable_glob(tmp_path, ctx):
    frames = np.random.default_rng(0).integers(0, 4096, size=(12, 4, 64))
    params = _series(tmp_path, frames, depth=12, nav_shape=(3, 4), files=3)
    for path in [params["path"], *_files(params)]:  # the .hdr or any file of the series
        ds = ctx.load("mib", path=path)
        assert ds.shape.nav.to_tuple() == (3, 4) and ds.layout_info()["files"] == 3
        out, _ = read_all(ds, ds.native_dtype)
        np.testing.assert_array_equal(out, frames)
    one = ctx.load("mib", path=_files(params)[1], disable_glob=True, nav_shape=(4,))
    out, _ = read_all(one, one.native_dtype)
    np.testing.assert_array_equal(out, frames[4:8])


def test_series_missing_file_in_the_middle(tmp_path, ctx):
    frames = np.zeros((9, 2, 64), np.uint16)
    params = _series(tmp_path, frames, depth=12, files=3)
    os.remove(_files(params)[1])
    with pytest.raises(DataSetError, match=r"scan1\.mib.*ends with frame 3.*scan3\.mib.*frames 4\.\.6 "
                                           r"are missing"):
        ctx.load("mib", path=params["path"])


def test_series_two_acquisitions(tmp_path, ctx):
    write_mib(tmp_path / "run1.mib", np.zeros((2, 2, 64)), depth=12)
    write_mib(tmp_path / "run2.mib", np.zeros((2, 2, 64)), depth=12)
    with pytest.raises(DataSetError, match="disable_glob=True"):
        ctx.load("mib", path=str(tmp_path / "run1.mib"), nav_shape=(4,))
    ds = ctx.load("mib", path=str(tmp_path / "run2.mib"), nav_shape=(2,), disable_glob=True)
    assert ds.image_count == 2


def test_series_files_disagree(tmp_path, ctx):
    write_mib(tmp_path / "s1.mib", np.zeros((2, 2, 64)), depth=12)
    write_mib(tmp_path / "s2.mib", np.zeros((2, 2, 64)), depth=24, first_seq=3)
    with pytest.raises(DataSetError, match=r"s2\.mib.*U32.*same series has.*U16"):
        ctx.load("mib", path=str(tmp_path / "s1.mib"), nav_shape=(4,))


# -- bad input ------------------------------------------------------------------------------------


def _one(tmp_path, n=4, depth=12, shape=(2, 64), **kw):
    path = tmp_path / "a.mib"
    frames = np.random.default_rng(1).integers(0, 1 << min(depth, 12), size=(n,) + shape)
    write_mib(path, frames, depth=depth, **kw)
    return str(path), frames


def test_truncated(tmp_path, ctx):
    path, frames = _one(tmp_path)
    stride = 384 + 2 * 64 * 2
    os.truncate(path, 3 * stride + 100)
    with pytest.raises(DataSetError, match=r"a\.mib' has 2020 bytes: 3 whole records of 640 bytes.*100 "
                                           r"bytes left over.*allow_partial"):
        ctx.load("mib", path=path, nav_shape=(4,))
    ds = ctx.load("mib", path=path, nav_shape=(4,), allow_partial=True)
    assert ds.image_count == 3
    out, _ = read_all(ds, ds.native_dtype)
    np.testing.assert_array_equal(out[:3], frames[:3])


def test_header_that_does_not_parse(tmp_path, ctx):
    path = tmp_path / "bad.mib"
    path.write_bytes(b"MQ1,000001,00x84,01,0256,0256,U16,   1x1,01," + b"\0" * 400)
    with pytest.raises(DataSetError, match=r"bad\.mib.*field 2 \(header size\): expected an integer, "
                                           r"found '00x84'"):
        ctx.load("mib", path=str(path), nav_shape=(1,))
    path.write_bytes(b"NOPE" * 200)
    with pytest.raises(DataSetError, match=r"bad\.mib.*not a Merlin MIB file: expected a frame header "
                                           r"starting with b'MQ1,', found b'NOPE"):
        ctx.load("mib", path=str(path), nav_shape=(1,))


@pytest.mark.parametrize(("field", "value", "message"), [
    (6, b"U08", r"frame 2: its header disagrees.*pixel type 'U08' \(first frame: 'U16'\)"),
    (4, b"0128", r"frame 2: its header disagrees.*width 128 \(first frame: 64\)"),
    (1, b"000009", r"frame 2: its header has sequence number 9, expected 3"),
    (0, b"XQ1", r"frame 2: not a Merlin MIB file"),
])
def test_frame_header_disagrees(tmp_path, ctx, field, value, message):
    path, _ = _one(tmp_path)
    stride = 384 + 2 * 64 * 2
    raw = bytearray(Path(path).read_bytes())
    head = bytes(raw[2 * stride:2 * stride + 384])
    parts = head.split(b",")
    parts[field] = value
    new = b",".join(parts)[:384]
    raw[2 * stride:2 * stride + 384] = new
    Path(path).write_bytes(bytes(raw))
    with pytest.raises(DataSetError, match=r"a\.mib.*" + message):
        ctx.load("mib", path=path, nav_shape=(4,))


def test_missing_hdr_and_missing_mib(tmp_path, ctx):
    path, _ = _one(tmp_path)
    with pytest.raises(DataSetError, match=r"a\.mib.*no nav_shape given and no \.hdr file found.*a\.hdr"
                                           r".*nav_shape=\(4,\)"):
        ctx.load("mib", path=path)
    write_hdr(tmp_path / "other.hdr", frames=4, frames_per_trigger=4, depth=12)
    with pytest.raises(DataSetError, match=r"other\.hdr.*found no \.mib file.*other\.mib"):
        ctx.load("mib", path=str(tmp_path / "other.hdr"))
    with pytest.raises(DataSetFileNotFoundError, match="gone.mib"):
        ctx.load("mib", path=str(tmp_path / "gone.mib"))
    (tmp_path / "a.hdr").write_bytes(b"not a header\n")
    with pytest.raises(DataSetError, match=r"a\.hdr' is not a Merlin \.hdr file: expected it to start "
                                           r"with b'HDR,'"):
        ctx.load("mib", path=path)


def test_hdr_disagrees(tmp_path, ctx):
    path, _ = _one(tmp_path)
    write_hdr(tmp_path / "a.hdr", frames=4, frames_per_trigger=4, depth=6)
    with pytest.raises(DataSetError, match=r"12-bit counters, but .*a\.hdr' says Counter Depth 6"):
        ctx.load("mib", path=path)
    write_hdr(tmp_path / "a.hdr", frames=6, frames_per_trigger=4, depth=12)
    with pytest.raises(DataSetError, match=r"6 is not a whole number of rows of 4\); pass nav_shape"):
        ctx.load("mib", path=path)
    write_hdr(tmp_path / "a.hdr", frames=8, frames_per_trigger=4, depth=12)
    with pytest.raises(DataSetError, match=r"holds 4 frames.*nav_shape \(2, 4\) needs 8.*allow_partial"):
        ctx.load("mib", path=path)
    ds = ctx.load("mib", path=path, allow_partial=True)
    assert ds.shape.nav.to_tuple() == (2, 4) and ds.image_count == 4


@pytest.mark.parametrize(("header_patch", "message"), [
    ({6: b"R64", "depth": b"8"}, r"counter depth 8 with pixel type R64; expected one of \[1, 6, 12, 24\]"),
    ({6: b"U16", "depth": b"6"}, r"counter depth 6 with pixel type U16; expected one of \[12\]"),
    ({6: b"F32"}, r"pixel type \(header field 6\): expected one of .*found 'F32'"),
    ({6: b"R64", 3: b"02", 7: b"   Nx1", "depth": b"12"}, r"raw layout \(R64\) of 2 chips in layout "
                                                          r"'Nx1' is not supported"),
    ({6: b"R64", 4: b"0100", "depth": b"1"}, r"a chip row of 100 pixels is not a whole number of "
                                             r"64-bit words"),
])
def test_unsupported(tmp_path, ctx, header_patch, message):
    head = frame_header(1, (2, 64), depth=12)
    parts = head.rstrip(b"\0").split(b",")
    for k, v in header_patch.items():
        if k == "depth":
            parts[-2] = v
        else:
            parts[k] = v
    new = b",".join(parts)
    path = tmp_path / "u.mib"
    path.write_bytes(new + b"\0" * (384 - len(new)) + b"\0" * 4096)
    with pytest.raises(DataSetError, match=r"u\.mib.*" + message):
        ctx.load("mib", path=str(path), nav_shape=(1,))


def test_sig_shape(tmp_path, ctx):
    path, frames = _one(tmp_path)
    ds = ctx.load("mib", path=path, nav_shape=(2, 2), sig_shape=(128,))
    out, _ = read_all(ds, ds.native_dtype)
    np.testing.assert_array_equal(out, frames.reshape(4, 128))
    with pytest.raises(DataSetError, match=r"sig_shape \(3, 3\) has 9 pixels, but the frames are \(2, 64\)"):
        ctx.load("mib", path=path, nav_shape=(4,), sig_shape=(3, 3))


def test_auto_detection(tmp_path, ctx):
    path, _ = _one(tmp_path)
    renamed = tmp_path / "frames.bin"
    shutil.copy(path, renamed)
    # magic bytes, whatever the name
    assert ctx.load("auto", path=str(renamed), nav_shape=(4,), disable_glob=True).format_name == "mib"
    write_hdr(tmp_path / "a.hdr", frames=4, frames_per_trigger=2, depth=12)
    ds = ctx.load("auto", path=str(tmp_path / "a.hdr"))
    assert ds.format_name == "mib" and ds.shape.nav.to_tuple() == (2, 2)


def test_raw_frames_without_depth_need_it(tmp_path, ctx):
    """Older headers without the extended part: the .hdr's Counter Depth decides the packing."""
    frames = np.random.default_rng(2).integers(0, 2, size=(3, 2, 64))
    rec = encode_raw(frames, 1)
    path = tmp_path / "old.mib"
    with open(path, "wb") as f:
        for k in range(3):
            head = frame_header(k + 1, (2, 64), depth=1, raw=True)
            head = head[:head.index(b",MQ1A")] + b","
            f.write(head.ljust(384, b"\0") + rec[k].tobytes())
    with pytest.raises(DataSetError, match=r"old\.mib.*without a counter depth.*Counter Depth"):
        ctx.load("mib", path=str(path), nav_shape=(3,))
    write_hdr(tmp_path / "old.hdr", frames=3, frames_per_trigger=3, depth=1)
    ds = ctx.load("mib", path=str(path))
    out, _ = read_all(ds, ds.native_dtype)
    np.testing.assert_array_equal(out, frames)
