"""The layers import downward only (DESIGN.md: common ← io ← udf ← executor ← api ← cli).

Every ``import`` and ``from ... import`` of every module of the package, at any depth
(imports inside functions too: a lazy import upward is still a dependency upward), is
resolved to the top-level part of udfkit it names, and that part's rank must not be above
the importing part's rank. ``udfkit.errors`` is the leaf every layer may raise from.
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
