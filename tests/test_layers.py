"""The layers import downward only (DESIGN.md: common ← io ← udf ← executor ← api ← cli).

Every ``import`` and ``from ... import`` of every module of the package, at any depth
(imports inside functions too: a lazy import upward is still a dependency upward), is
resolved to the top-level part of udfkit it names, and that part's rank must not be above
the importing part's rank. ``udfkit.errors`` is the leaf every layer may raise from.

Within a layer, the *contract* modules (the abstract classes a layer's implementations
subclass: data sets, partitions, I/O backends, formats, frame decoders, executors, UDFs)
import no implementation of their own layer, so that reading a contract never pulls in a
concrete class: each may import only the same-layer modules listed for it in CONTRACTS,
modules of value types and pure helpers (STYLE.md: contracts before implementations).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "udfkit"

#: rank of each top-level part of udfkit; a part imports parts of lower rank (or itself)
RANKS = {
    "errors": 0,
    "common": 1, "masks": 1,
    "io": 2,
    "udf": 3,
    "executor": 4, "viz": 4, "preload": 4,
    "analysis": 5,
    "api": 6,
    "cli": 7,
    # the public surface and the test helpers sit on top of everything
    "__init__": 8, "__main__": 8, "testing": 8,
}


def _part(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imported_parts(path: pathlib.Path):
    """``(line, part)`` of every udfkit part that ``path`` imports."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = list(rel if path.name == "__init__.py" else rel[:-1])
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
                names = [] if node.module else [a.name for a in node.names]
            else:
                target = node.module.split(".") if node.module else []
                names = [a.name for a in node.names] if node.module == "udfkit" else []
            if target[:1] != ["udfkit"]:
                continue
            if len(target) >= 2:
                yield node.lineno, target[1]
            else:  # ``from udfkit import masks`` / ``from .. import masks``
                for name in names:
                    yield node.lineno, name if name in RANKS else "__init__"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "udfkit":
                    yield node.lineno, parts[1] if len(parts) > 1 else "__init__"


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_part_has_a_rank():
    parts = {_part(p) for p in MODULES}
    assert parts <= set(RANKS), f"give these parts of udfkit a rank in RANKS: {sorted(parts - set(RANKS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_downward(path):
    own = _part(path)
    upward = [f"line {line}: imports udfkit.{part} (rank {RANKS.get(part)}) from udfkit.{own} "
              f"(rank {RANKS[own]})"
              for line, part in _imported_parts(path)
              if part != own and RANKS.get(part, 99) > RANKS[own]]
    assert not upward, f"{path.relative_to(PACKAGE.parent)}: " + "; ".join(upward)


# -- contracts import no implementation of their own layer ----------------------------------

#: contract module -> the modules of its own layer it may import (value types and helpers)
CONTRACTS = {
    "udfkit.io.base": {
        "udfkit.io.partitioning",  # partition-count arithmetic, no classes
        "udfkit.io.tiling",  # TilingScheme / TilingConstraints, values of the contract
        "udfkit.io.layout",  # FileSet, the byte layout an IOBackend opens (annotations only)
    },
    "udfkit.io.formats.base": set(),
    "udfkit.io.decoders": set(),
    "udfkit.executor.base": set(),
    "udfkit.udf.base": {
        "udfkit.udf.buffers",  # buffer declarations and views a UDF is made of
        "udfkit.udf.meta",  # the UDFMeta value a UDF reads
    },
}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(rel[:-1] if rel[-1] == "__init__" else rel)


def _is_module(dotted: str, root: pathlib.Path = PACKAGE.parent) -> bool:
    where = root.joinpath(*dotted.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _imported_modules(path: pathlib.Path, root: pathlib.Path = PACKAGE.parent):
    """``(line, module)`` of every udfkit module ``path`` imports (``from . import x`` names
    module ``x`` where ``x`` is one); ``root`` holds the ``udfkit`` folder."""
    rel = path.relative_to(root).with_suffix("").parts
    package = list(rel if path.name == "__init__.py" else rel[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + (node.module.split(".") if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "udfkit":
                continue
            submodules = [f"{module}.{a.name}" for a in node.names
                          if _is_module(f"{module}.{a.name}", root)]
            for name in submodules or [module]:
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "udfkit":
                    yield node.lineno, alias.name


def _layer(module: str) -> str:
    """The layer a module belongs to: ``udfkit.io.formats.raw`` -> ``udfkit.io``. The layer's
    package itself (its ``__init__`` imports implementations) counts as one of its modules."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_contract_modules_exist():
    missing = [m for m in CONTRACTS if not _is_module(m)]
    assert not missing, f"CONTRACTS names modules that do not exist (renamed?): {missing}"


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_contracts_import_no_implementation(contract):
    path = PACKAGE.parent.joinpath(*contract.split(".")).with_suffix(".py")
    allowed = CONTRACTS[contract]
    bad = [f"line {line}: {module}" for line, module in _imported_modules(path)
           if _layer(module) == _layer(contract) and module not in allowed]
    assert not bad, (f"{contract} is a contract module; it imports implementation modules of its "
                     f"own layer: {'; '.join(bad)} (move the shared code into a value/helper module "
                     "and list it in CONTRACTS, or invert the dependency)")


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The import reader finds an implementation imported inside a method, relatively."""
    pkg = tmp_path / "udfkit" / "io"
    pkg.mkdir(parents=True)
    (tmp_path / "udfkit" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "tiles.py").write_text("")
    (pkg / "base.py").write_text("class P:\n    def f(self):\n        from .tiles import g\n"
                                 "        from . import tiles\n")
    found = list(_imported_modules(pkg / "base.py", root=tmp_path))
    assert found == [(3, "udfkit.io.tiles"), (4, "udfkit.io.tiles")]
