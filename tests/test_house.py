"""The house rules of ARCHITECTURE.md, checked on the source: the layers as folders, a module
imports only from its own layer and the layers below (stages never from each other), at most 8
modules at the package root, and no function outside the click commands with more than 6
positional parameters."""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent

#: top to bottom; a module may import from its own layer and from the layers below it
LAYERS = [
    ("interface", ["cli"]),
    ("run", ["pipeline"]),
    ("workers", ["workers"]),
    ("shot", ["shot"]),
    ("stages", ["keyframes", "interpolate", "identity"]),
    ("outputs", ["outputs"]),
    ("base", ["core"]),
]
STAGES = {"keyframes", "interpolate", "identity"}
SKIP = {".venv", "tests", "benchmarks", "samples", "build", "docs", ".git"}


def _modules():
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(part.startswith(".") for part in rel.parts):
            continue
        yield rel, ast.parse(p.read_text(encoding="utf-8"))


def _room(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _layer(room: str) -> int | None:
    return next((i for i, (_, rooms) in enumerate(LAYERS) if room in rooms), None)


def _imports(rel: Path, tree: ast.AST):
    package = list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = [*base, *(node.module or "").split(".")] if node.module else base
                names = [target] if node.module else [[*base, a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "keyrender":
                target = node.module.split(".")[1:]
                names = [target] if target else [[a.name] for a in node.names]
            else:
                continue
            for t in names:
                if t:
                    yield node.lineno, t
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "keyrender" and len(parts) > 1:
                    yield node.lineno, parts[1:]


def test_every_module_belongs_to_a_layer():
    rooms = {_room(rel.parts) for rel, _ in _modules()} - {"__init__"}
    assert {r for r in rooms if _layer(r) is None} == set()


def test_modules_import_only_their_own_layer_and_below():
    bad = []
    for rel, tree in _modules():
        room = _room(rel.parts)
        if room == "__init__":
            continue
        mine = _layer(room)
        for line, target in _imports(rel, tree):
            other = target[0]
            if other == room:
                continue
            theirs = _layer(other)
            if theirs is None or theirs < mine or (other in STAGES and room in STAGES):
                bad.append(f"{rel}:{line} ({LAYERS[mine][0]}) imports keyrender.{'.'.join(target)}")
    assert bad == []


def test_at_most_eight_modules_at_the_package_root():
    root = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert len(root) <= 8, root
    assert {"cli.py", "pipeline.py"} <= set(root)


def _positional(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names[1:] if names and names[0] in ("self", "cls") else names


def _click_command(fn: ast.FunctionDef) -> bool:
    return any("command" in ast.unparse(d) for d in fn.decorator_list)


def _functions():
    for rel, tree in _modules():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield f"{rel.as_posix()} {node.name}.{item.name}", item
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{rel.as_posix()} {node.name}", node


def test_no_function_takes_more_than_six_positional_parameters():
    long = {name for name, fn in _functions() if len(_positional(fn)) > 6 and not _click_command(fn)}
    assert long == set()
