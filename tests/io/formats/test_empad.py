"""The empad format: the conformance suite on acquisitions written here (XML + raw file of
128 x 130 float32 frames), the real XML with a raw file written for it against rosettasciio,
the ways the XML gives the scan shape, and bad input (raw file of the wrong size, missing raw
file, XML that does not parse)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from udfkit.cli.info import describe
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats import detect_format
from udfkit.io.formats.empad import EMPADFormat, read_empad_xml
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


def write_raw(path, frames, seed=0):
    """Frames (n, 128, 128) as an EMPAD raw file: each with two rows of (nonzero) metadata."""
    frames = np.asarray(frames, dtype="<f4")
    n = len(frames)
    stored = np.empty((n, 130, 128), dtype="<f4")
    stored[:, :128] = frames
    # metadata rows that differ from the pixels, so that reading them would show
    stored[:, 128:] = np.random.default_rng(seed).integers(1000, 2000, (n, 2, 128))
    stored.tofile(path)
    return str(path)


def scan_xml(path, *, pix=None, raw_name="scan.raw", resolution=None, kind="scan", count=None):
    """An EMPAD XML file as the acquisition software writes it (the elements udfkit reads, with
    scan_resolution that differs from pix_x / pix_y, as in real files)."""
    parts = ['<root name="acquisition_1"><timestamp timestamp="1559820600.1" '
             'isoformat="2019-06-06T13:30:00.164675"/>']
    if kind is not None:
        parts.append(f"<type>{kind}</type>")
    if count is not None:
        parts.append(f"<count>{count}</count>")
    if pix is not None:
        parts.append(f"<pix_x>{pix[1]}</pix_x><pix_y>{pix[0]}</pix_y>")
    parts.append(f'<raw_file filename="{raw_name}"/>')
    acquire, search = resolution if resolution is not None else ((128, 128), (64, 64))
    parts.append(f'<scan_parameters mode="search"><scan_resolution_x>{search[1]}</scan_resolution_x>'
                 f'<scan_resolution_y>{search[0]}</scan_resolution_y></scan_parameters>')
    parts.append(f'<scan_parameters mode="acquire"><scan_resolution_x>{acquire[1]}</scan_resolution_x>'
                 f'<scan_resolution_y>{acquire[0]}</scan_resolution_y></scan_parameters>')
    if kind == "series":
        parts.append(f"<scan_parameters><series_count>{count}</series_count></scan_parameters>")
    parts.append("</root>")
    Path(path).write_text("".join(parts))
    return str(path)


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


def _empad(case: FormatCase) -> FormatCase:
    """The same case with EMPAD's frames of 128 x 128 float32; tiles scaled to the frame."""
    tile = tuple(max(1, t * 128 // s) for t, s in zip(case.tile_sig, case.sig_shape))
    return FormatCase(nav_shape=case.nav_shape, sig_shape=(128, 128), dtype="<f4",
                      sync_offset=case.sync_offset, num_partitions=case.num_partitions, roi=case.roi,
                      io_backend=case.io_backend, tile_sig=tile, depth=case.depth, seed=case.seed)


class TestEMPAD(DataSetTests):
    """Scans (pix_y x pix_x) and series (count) of 128 x 128 float32 frames."""

    format = "empad"
    dtypes = ("<f4",)
    io_backends = BACKENDS
    sig_dims = 2
    # worker executors start once per class and cost most of the run: the default run covers
    # the in-process ones; the subclass below runs processes and dask (-m slow). Partitions
    # travel to workers by pickle / cloudpickle, which test_partitions_pickle checks here (the
    # mrc suite, on the same FileLayout partitions, runs all four executors by default).
    executors = ("inline", "threads")
    max_examples = 6

    def _cases(self, **kwargs):
        return super()._cases(**kwargs).map(_empad)

    def _fixed_case(self, io_backend):
        return _empad(super()._fixed_case(io_backend))

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:-2]
        frames = data.reshape((-1, 128, 128))
        if len(nav) == 1:
            write_raw(tmp_path / "series.raw", frames)
            xml = scan_xml(tmp_path / "acq.xml", raw_name="series.raw", kind="series", count=nav[0])
        else:
            write_raw(tmp_path / "scan.raw", frames)
            # the XML names the raw file by its path on the acquisition machine
            xml = scan_xml(tmp_path / "acq.xml", pix=nav, raw_name="/acquisition/empad/scan.raw")
        return dict(path=xml)

    def corrupt(self, params):
        raw = read_empad_xml(params["path"]).raw_path
        os.truncate(raw, os.path.getsize(raw) // 2)

    def file_names(self, params):
        return [os.path.basename(read_empad_xml(params["path"]).raw_path)]



@pytest.mark.slow
class TestEMPADWorkers(TestEMPAD):
    """The suite on worker processes and a dask cluster."""

    executors = ("processes", "dask")

def test_empad_cases_have_empad_frames():
    """The conformance cases above really are EMPAD frames (else the suite tests nothing)."""
    from hypothesis import given, settings

    seen = []

    @settings(max_examples=examples(10), deadline=None)
    @given(case=TestEMPAD()._cases())
    def check(case):
        seen.append(case)
        assert case.sig_shape == (128, 128) and case.dtype == np.dtype("<f4")
        assert case.data.shape == case.nav_shape + (128, 128)

    check()
    assert len(seen) == examples(10)


# -- the real XML -----------------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path):
    """The sample XML (a series of 10) copied into tmp_path with the raw file it names."""
    xml = shutil.copy(fixture("empad", "stack_images.xml"), tmp_path / "stack_images.xml")
    frames = np.random.default_rng(7).normal(100, 30, (10, 128, 128)).astype("<f4")
    write_raw(tmp_path / "series_x10.raw", frames)
    return str(xml), frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_xml_equals_rosettasciio(inline_ctx, sample, backend):
    from rsciio.empad import file_reader

    xml, frames = sample
    ref = np.asarray(file_reader(xml)[0]["data"])
    np.testing.assert_array_equal(ref, frames)
    ds = inline_ctx.load("empad", path=xml, io_backend=backend, num_partitions=3)
    assert ds.shape.to_tuple() == ref.shape == (10, 128, 128)
    assert ds.dtype == ref.dtype
    check_reads(inline_ctx, ds, ref)


def test_sample_xml_info(inline_ctx, sample):
    xml, _ = sample
    facts = describe(inline_ctx, "auto", {"path": xml})
    assert facts["format"] == "empad"
    assert facts["nav_shape"] == [10] and facts["sig_shape"] == [128, 128] and facts["dtype"] == "<f4"
    layout = facts["layout"]
    assert layout["kind"] == "series" and layout["nav_shape_from"] == "series_count"
    assert layout["raw_file"].endswith("series_x10.raw") and "1024-byte frame footer" in layout["frame"]


@pytest.mark.parametrize(("name", "kind"), [("stack_images.xml", "xml"), ("series_x10.raw", "raw")])
def test_auto_detects_xml_and_named_raw(tmp_path, sample, name, kind):
    path = str(tmp_path / name)
    assert EMPADFormat.guess_can_open(path) == (0.9 if kind == "xml" else 0.8)
    assert detect_format({"path": path}) == "empad"


# -- where the scan shape comes from -----------------------------------------------------------


def frames_of(n, seed=0):
    return np.random.default_rng(seed).integers(-50, 50, (n, 128, 128)).astype("<f4")


def test_pix_beats_scan_resolution(inline_ctx, tmp_path):
    """pix_y x pix_x (here 3 x 5) agree with the raw file; scan_resolution (128, 64) does not."""
    frames = frames_of(15)
    write_raw(tmp_path / "scan_x5_y3.raw", frames)
    xml = scan_xml(tmp_path / "a.xml", pix=(3, 5), raw_name="scan_x5_y3.raw")
    ds = inline_ctx.load("empad", path=xml)
    assert ds.shape.nav.to_tuple() == (3, 5)
    assert ds.layout_info()["nav_shape_from"] == "pix_y, pix_x"
    check_reads(inline_ctx, ds, frames)


def test_shape_from_raw_file_name(inline_ctx, tmp_path):
    """EMPAD 1.2 writes no pix_x / pix_y: the raw file's name scan_x<X>_y<Y> gives the shape."""
    frames = frames_of(8)
    write_raw(tmp_path / "scan_x4_y2.raw", frames)
    xml = scan_xml(tmp_path / "a.xml", raw_name="scan_x4_y2.raw", resolution=((2, 4), (2, 4)))
    ds = inline_ctx.load("empad", path=xml)
    assert ds.shape.nav.to_tuple() == (2, 4)
    assert "raw file name" in ds.layout_info()["nav_shape_from"]
    check_reads(inline_ctx, ds, frames)


@pytest.mark.parametrize(("resolution", "nav", "mode"), [
    (((2, 3), (4, 4)), (2, 3), "acquire"), (((5, 5), (3, 2)), (3, 2), "search")])
def test_shape_from_the_scan_resolution_that_fits(inline_ctx, tmp_path, resolution, nav, mode):
    frames = frames_of(6)
    write_raw(tmp_path / "data.raw", frames)
    xml = scan_xml(tmp_path / "a.xml", raw_name="data.raw", resolution=resolution)
    ds = inline_ctx.load("empad", path=xml)
    assert ds.shape.nav.to_tuple() == nav
    assert f"mode={mode!r}" in ds.layout_info()["nav_shape_from"]
    check_reads(inline_ctx, ds, frames)


def test_raw_path_with_nav_shape(inline_ctx, tmp_path):
    frames = frames_of(6)
    raw = write_raw(tmp_path / "lonely.raw", frames)
    assert EMPADFormat.guess_can_open(raw) == 0.0  # no XML names it: the raw format's file
    check_reads(inline_ctx, inline_ctx.load("empad", path=raw), frames)
    ds = inline_ctx.load("empad", path=raw, nav_shape=(2, 3), sig_shape=(64, 256))
    check_reads(inline_ctx, ds, frames.reshape(6, 64, 256))


def test_nav_shape_overrides_the_xml(inline_ctx, tmp_path):
    frames = frames_of(6)
    write_raw(tmp_path / "scan.raw", frames)
    xml = scan_xml(tmp_path / "a.xml", pix=(4, 4), raw_name="scan.raw")
    ds = inline_ctx.load("empad", path=xml, nav_shape=(3, 2))
    check_reads(inline_ctx, ds, frames)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 7])
def test_raw_size_disagrees_with_xml(inline_ctx, tmp_path, n):
    write_raw(tmp_path / "scan.raw", frames_of(n))
    xml = scan_xml(tmp_path / "a.xml", pix=(2, 3), raw_name="scan.raw")
    with pytest.raises(DataSetError, match=rf"scan\.raw.*{n * 66560} bytes: {n} frames of 130 x 128 "
                                           rf"float32.*a\.xml.*\(2, 3\) = 6 frames.*disagree"):
        inline_ctx.load("empad", path=xml)


def test_shorter_raw_file_with_allow_partial(inline_ctx, tmp_path):
    frames = frames_of(4)
    write_raw(tmp_path / "scan.raw", frames)
    xml = scan_xml(tmp_path / "a.xml", pix=(2, 3), raw_name="scan.raw")
    ds = inline_ctx.load("empad", path=xml, allow_partial=True)
    assert ds.shape.nav.to_tuple() == (2, 3) and ds.image_count == 4
    res = inline_ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    assert res.valid_mask.reshape(-1).tolist() == [True] * 4 + [False] * 2
    np.testing.assert_allclose(res.data.reshape(-1)[:4], frames.reshape(4, -1).sum(axis=1))


def test_raw_file_with_a_partial_frame(inline_ctx, tmp_path):
    raw = write_raw(tmp_path / "scan.raw", frames_of(6))
    os.truncate(raw, 5 * 66560 + 1000)
    xml = scan_xml(tmp_path / "a.xml", pix=(2, 3), raw_name="scan.raw")
    with pytest.raises(DataSetError, match=r"scan\.raw.*5 frames and 1000 bytes left over.*allow_partial"):
        inline_ctx.load("empad", path=xml)
    with pytest.raises(DataSetError, match=r"scan\.raw.*5 frames of .* and 1000 bytes left over"):
        inline_ctx.load("empad", path=raw)


def test_missing_raw_file(inline_ctx, tmp_path):
    xml = scan_xml(tmp_path / "a.xml", pix=(2, 3), raw_name="C:\\data\\gone.raw")
    with pytest.raises(DataSetFileNotFoundError, match=r"a\.xml.*names the raw file .*gone\.raw.*"
                                                       r"does not exist"):
        inline_ctx.load("empad", path=xml)


@pytest.mark.parametrize(("text", "message"), [
    ("<root><pix_x>2</pix", "does not parse as XML"),
    ("<root><pix_x>2</pix_x><pix_y>2</pix_y></root>", r"no <raw_file filename=\"...\"/> element"),
    ('<root><type>scan</type><raw_file filename="d.raw"/></root>', "gives no scan shape"),
    ('<root><pix_x>two</pix_x><pix_y>2</pix_y><raw_file filename="d.raw"/></root>',
     "<pix_x> is 'two'; expected a whole number"),
    ('<root><type>movie</type><raw_file filename="d.raw"/></root>', "<type> is 'movie'"),
    ('<root><type>series</type><raw_file filename="d.raw"/></root>', "series without <count>"),
    ('<!DOCTYPE r [<!ENTITY a "aaaa">]><root>&a;</root>', "does not parse as XML"),
])
def test_xml_that_does_not_parse(inline_ctx, tmp_path, text, message):
    write_raw(tmp_path / "d.raw", frames_of(2))
    (tmp_path / "bad.xml").write_text(text)
    with pytest.raises(DataSetError, match=rf"bad\.xml.*{message}"):
        inline_ctx.load("empad", path=str(tmp_path / "bad.xml"))


def test_other_file_kinds(inline_ctx, tmp_path):
    other = tmp_path / "scan.dat"
    other.write_bytes(b"\0" * 100)
    with pytest.raises(DataSetError, match=r"scan\.dat.*expected the acquisition's \.xml file or its "
                                           r"\.raw file"):
        inline_ctx.load("empad", path=str(other))
    (tmp_path / "plain.xml").write_text("<root><a/></root>")
    assert EMPADFormat.guess_can_open(str(tmp_path / "plain.xml")) == 0.0


def test_sig_shape_must_keep_the_pixels(inline_ctx, tmp_path, sample):
    xml, _ = sample
    with pytest.raises(DataSetError, match=r"sig_shape \(130, 128\) has 16640 pixels.*16384 \(128, 128\)"):
        inline_ctx.load("empad", path=xml, sig_shape=(130, 128))
