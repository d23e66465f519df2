"""The package's layering: no import circles among its modules (imports inside functions count too), every package on
its floor (a package imports only packages on its own floor or below, and packages form no circle), and no package
outside `bench` reaches into the benchmark for the engine or for `evaluate`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "imagesafety"
ENGINE_IN_BENCH = (
    "imagesafety.bench.runner",
    "imagesafety.bench.progress",
    "imagesafety.bench.engines",
    "imagesafety.bench.evaluate",
)
KEPT_OUT_OF_BENCH = ("run", "encoders", "serve", "guard", "hyperbolic", "pairs", "data", "classifiers", "perspective")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside `if TYPE_CHECKING:` blocks (annotations only, never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package this module imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None:
            found = visit(node)
            if found:
                return found
    return None


#: floors, lowest first; a package (the first name below `imagesafety`) imports only its own floor and those below.
#: docs/architecture.md shows the same table.
FLOORS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "foundations",
        frozenset(
            {
                "imagesafety",
                "files",
                "identity",
                "store",
                "queues",
                "hub",
                "net",
                "taxonomy",
                "splits",
                "distributed",
                "pixels",
                "media",
                "images",
                "onnx_module",
                "tfjs",
                "registry",
                "calibration",
                "records",
            }
        ),
    ),
    ("data", frozenset({"data"})),
    ("hashes", frozenset({"hashes"})),
    ("model files", frozenset({"model_card"})),
    ("encoders", frozenset({"encoders", "hyperbolic"})),
    ("classifiers", frozenset({"classifiers"})),
    ("engine", frozenset({"run"})),
    ("applications", frozenset({"bench", "evidence", "policy", "perspective", "guard", "hysac", "pairs", "serve"})),
    ("shell", frozenset({"cli", "__main__"})),
)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        packages.setdefault(package_of(module), set()).update(package_of(t) for t in targets)
    return {p: targets - {p} for p, targets in packages.items()}


def floor_violations(graph: dict[str, set[str]], floors=FLOORS) -> list[str]:
    """Module imports that climb: from a package on one floor to a package on a higher floor."""
    level = {package: i for i, (_, members) in enumerate(floors) for package in members}
    found = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = package_of(module), package_of(target)
            if a in level and b in level and level[b] > level[a]:
                found.append(f"{module} ({floors[level[a]][0]}) imports {target} ({floors[level[b]][0]})")
    return found


def test_every_package_has_a_floor():
    placed = set().union(*(members for _, members in FLOORS))
    assert set(package_graph(import_graph())) - placed == set(), (
        "place the new package in FLOORS (and docs/architecture.md)"
    )


def test_no_package_imports_a_higher_floor():
    assert floor_violations(import_graph()) == []


def test_no_circles_among_packages():
    cycle = find_cycle(package_graph(import_graph()))
    assert cycle is None, "package circle: " + " -> ".join(cycle)


def test_a_planted_back_edge_is_found():
    """The floor check on the real graph with one climbing import added (the data package importing the benchmark)."""
    graph = {m: set(t) for m, t in import_graph().items()}
    graph["imagesafety.data.folder"].add("imagesafety.bench.evaluate")
    assert floor_violations(graph) == [
        "imagesafety.data.folder (data) imports imagesafety.bench.evaluate (applications)"
    ]
    graph["imagesafety.bench.evaluate"].add("imagesafety.data.folder")  # and the circle it closes between packages
    assert find_cycle(package_graph(graph)) is not None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("package", KEPT_OUT_OF_BENCH)
def test_no_package_reaches_into_bench_for_the_engine(package):
    graph = import_graph()
    offenders = sorted(
        f"{m} imports {t}"
        for m, targets in graph.items()
        if m.startswith(f"imagesafety.{package}")
        for t in targets
        if t.startswith(ENGINE_IN_BENCH)
    )
    assert not offenders, offenders


def test_engine_modules_live_in_run():
    names = set(modules())
    assert {
        "imagesafety.run.runner",
        "imagesafety.run.progress",
        "imagesafety.run.tasks",
        "imagesafety.run.ray_engine",
    } <= names
    assert not any(n.startswith(ENGINE_IN_BENCH[:3]) for n in names)


def test_the_cli_runs_without_click_installed():
    """A base install has typer (which may carry its own click) but not necessarily click itself."""
    import subprocess
    import sys

    code = "import sys; sys.modules['click'] = None; from imagesafety.cli import app; app(['--help'])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "eval" in result.stdout
