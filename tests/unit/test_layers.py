"""The tree is the architecture: every import in rlkit/ points down the layers, and no modules import each other.

Read from the source (ast), lazy imports inside functions included, so a dependency that only shows at run time
cannot slip in either.
"""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "rlkit"
# bottom to top; a module imports from its own package or from a lower level, never sideways or up
LEVELS = {
    "config": 0, "_moved": 0, "notices": 0,
    "steps": 1, "fast": 1,
    "envs": 2, "data": 2, "runs": 2,
    "nn": 3,
    "algos": 4,
    "loop": 5,
    "trained": 6,
    "analysis": 7,
    "experiments": 8,
    "cli": 9,
    "__main__": 10, "__init__": 10,
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def part_of(name: str) -> str:
    """The layer's key of a module name: rlkit.algos.ppo -> algos, rlkit.config -> config, rlkit -> __init__."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, top_level_only: bool = False):
    """(imported rlkit module, line) of every import in the file."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rlkit":
            for alias in node.names:  # `from rlkit.algos import ppo` imports the module rlkit.algos.ppo
                sub = f"{node.module}.{alias.name}"
                yield (sub if (ROOT / (sub.replace(".", "/") + ".py")).exists() else node.module), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rlkit":
                    yield alias.name, node.lineno


def test_every_module_has_a_layer():
    unknown = {part_of(name) for name, _ in modules()} - set(LEVELS)
    assert not unknown, f"add these to LEVELS (and to the layer list in rlkit/__init__.py): {unknown}"


def test_imports_point_down_the_layers():
    wrong = []
    for name, path in modules():
        mine = part_of(name)
        for target, line in imports(path):
            if target == "rlkit":  # the package itself: rlkit.__version__, rlkit.train, always loaded first
                continue
            theirs = part_of(target)
            if theirs != mine and LEVELS[theirs] >= LEVELS[mine]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({mine}, level {LEVELS[mine]}) imports {target} "
                             f"({theirs}, level {LEVELS[theirs]})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules():
    graph = {name: {t for t, _ in imports(path, top_level_only=True) if t != "rlkit"} for name, path in modules()}
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_checks_can_fail(tmp_path, monkeypatch):
    """A module that reaches up is caught: the check is not vacuous."""
    bad = tmp_path / "rlkit" / "envs"
    bad.mkdir(parents=True)
    (bad / "bad.py").write_text("from rlkit.loop.trainer import train\n")
    [(target, line)] = list(imports(bad / "bad.py"))
    assert (part_of("rlkit.envs.bad"), part_of(target), line) == ("envs", "loop", 1)
    assert LEVELS["loop"] > LEVELS["envs"]
