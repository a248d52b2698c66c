"""The format contract: one registry, parameter tables that match the data sets, detection,
unknown parameters, entry points and the command-line options built from the tables."""

from __future__ import annotations

import inspect
import sys
import textwrap

import numpy as np
import pytest

from udfkit.errors import DataSetError
from udfkit.io import formats as registry
from udfkit.io.base import DataSet
from udfkit.io.formats.base import Format, Param

FORMAT_NAMES = sorted(registry.BUILTIN_FORMATS)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_params_match_the_dataset_signature(name):
    """The table is what ``ctx.load`` accepts, so it must be the constructor's keywords."""
    fmt = registry.get_format(name)
    assert issubclass(fmt, Format) and fmt.name == name
    cls = fmt.dataset_class()
    assert issubclass(cls, DataSet)
    assert cls.format_name == name
    signature = inspect.signature(cls.__init__).parameters
    keywords = [p for p in signature if p != "self"]
    assert fmt.param_names() == keywords
    for param in fmt.params:
        assert isinstance(param, Param)
        assert signature[param.name].default == param.default, param.name
        assert param.help, f"{name}.{param.name} has no help text"


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_format_modules_import_no_optional_dependency(name):
    """The registry imports every format module for "auto": they must stay light."""
    code = textwrap.dedent(f"""
        import sys
        from udfkit.io.formats import get_format
        get_format({name!r})
        heavy = [m for m in ("h5py", "zarr", "tifffile", "hdf5plugin") if m in sys.modules]
        print(",".join(heavy))
    """)
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_udfkit_imports_no_format_library():
    import subprocess

    code = ("import sys, udfkit; print(','.join(m for m in ('h5py', 'zarr', 'tifffile', 'dask.array') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_parameter_lists_the_accepted_ones(inline_ctx, tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((2, 4, 4)))
    with pytest.raises(DataSetError, match=r"npy format: unknown parameter 'sigshape' "
                                           r".*did you mean 'sig_shape'.*accepted parameters: \['path'"):
        inline_ctx.load("npy", path=path, sigshape=(4, 4))


SINGLE_PATH_FORMATS = [name for name in FORMAT_NAMES
                       if {p.name: p.kind for p in registry.get_format(name).params}.get("path") == "path"]


@pytest.mark.parametrize("name", SINGLE_PATH_FORMATS)
def test_a_list_of_paths_for_a_one_file_format_points_to_stack(inline_ctx, tmp_path, name):
    # the files need not exist: the list is refused before the format opens anything
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    with pytest.raises(DataSetError, match=rf"{name} format: path takes one file, got a list of 2 "
                                           rf"paths.*ctx.load\('stack'"):
        inline_ctx.load(name, path=paths)


def test_auto_refuses_nested_path_lists(inline_ctx, tmp_path):
    with pytest.raises(DataSetError, match="list of lists"):
        inline_ctx.load("auto", path=[[str(tmp_path / "a")]])


def test_unknown_filetype_suggests(inline_ctx):
    with pytest.raises(DataSetError, match=r"expected one of .*'npy'.*got 'nyp' \(did you mean 'npy'\?\)"):
        inline_ctx.load("nyp", path="x")


def test_auto_lists_the_formats_tried(inline_ctx, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not data")
    with pytest.raises(DataSetError) as info:
        inline_ctx.load("auto", path=path)
    message = str(info.value)
    assert "notes.txt" in message
    for name, fmt in registry.all_formats().items():
        if fmt.array_param is None:
            assert f"{name} (" in message or f"{name}," in message or message.endswith(name), name


def test_auto_magic_beats_extension(inline_ctx, tmp_path):
    """An .npy file named .raw is still recognised by its magic bytes."""
    data = np.arange(2 * 3 * 4, dtype="int16").reshape(2, 3, 4)
    path = tmp_path / "actually_npy.raw"
    with open(path, "wb") as f:
        np.save(f, data)
    ds = inline_ctx.load("auto", path=path)
    assert ds.format_name == "npy"


class _ToyFormat(Format):
    name = "toy"
    dataset = "udfkit.io.formats.memory:MemoryDataSet"
    extensions = (".toy",)
    params = ()


def test_entry_point_formats_are_registered(monkeypatch):
    """A third-party format plugs in through the ``udfkit.formats`` entry-point group."""
    from importlib import metadata

    ep = metadata.EntryPoint(name="toy", value=f"{__name__}:_ToyFormat", group="udfkit.formats")
    shadow = metadata.EntryPoint(name="raw", value=f"{__name__}:_ToyFormat", group="udfkit.formats")

    def fake_entry_points(group=None):
        return [ep, shadow] if group == "udfkit.formats" else []

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    registry._entry_points.cache_clear()
    try:
        assert registry.get_format("toy") is _ToyFormat
        assert registry.get_format("raw").name == "raw"  # built-ins cannot be replaced
        assert "toy" in registry.all_formats()
    finally:
        registry._entry_points.cache_clear()


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    class NeedsMissing(Format):
        name = "needy"
        requires = ("udfkit_no_such_module", "needy-extra")

    with pytest.raises(DataSetError, match=r"pip install 'udfkit\[needy-extra\]'"):
        NeedsMissing.dataset_class()


def test_cli_options_come_from_the_tables():
    from udfkit.cli import build_parser

    parser = build_parser()
    info = parser._subparsers._group_actions[0].choices["info"]
    options = {a.dest for a in info._actions}
    for fmt in registry.all_formats().values():
        for param in fmt.params:
            if param.on_command_line:
                assert param.name in options, param.name
    args = parser.parse_args(["info", "x.raw", "--nav-shape", "4,4", "--frame-header-bytes", "8"])
    assert args.nav_shape == (4, 4) and args.frame_header_bytes == 8
