"""The packages import one way: bandit_core, simulation, then components and serving, then the pipeline.

An AST walk of every non-test module (function-level and relative imports
included) finds each import of one of our packages and checks it against the
layer table below. A second test runs the same check on a small tree with one
upward import, so the check is shown to fail when it should.
"""

import ast
import pathlib
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Package -> layer; a module may import its own package or a lower layer.
LAYERS: Dict[str, int] = {
    "bandit_core": 0,
    "simulation": 1,
    "custom_components": 2,
    "serving": 2,
    "tfx_pipeline": 3,
}


def _imported_modules(path: pathlib.Path, module: str) -> Iterator[Tuple[int, str]]:
    """(line, dotted module) for every import in `path`, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package_parts = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _component(module: str) -> Optional[str]:
    parts = module.split(".")
    return parts[1] if parts[0] == "custom_components" and len(parts) > 1 else None


def find_violations(root: pathlib.Path, layers: Dict[str, int] = LAYERS) -> List[str]:
    """Every import that goes up a layer, sideways between layer-2 packages, or between components."""
    violations = []
    for package in layers:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            for line, target in _imported_modules(path, module):
                top = target.split(".")[0]
                if top not in layers or top == package:
                    if top == package == "custom_components":
                        source, imported = _component(module), _component(target)
                        if source and imported and imported != source and (root / "custom_components" / imported).is_dir():
                            violations.append(
                                f"{path.relative_to(root)}:{line} imports {target}: components do not "
                                "import each other; move what they share to bandit_core"
                            )
                    continue
                if layers[top] >= layers[package]:
                    violations.append(
                        f"{path.relative_to(root)}:{line} imports {target}: {package} (layer "
                        f"{layers[package]}) may import only lower layers"
                    )
    return sorted(set(violations))


def test_the_project_imports_one_way():
    assert find_violations(REPO) == []


def _write(root: pathlib.Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    "relative, text, expected",
    [
        ("bandit_core/columns.py", "from serving import server\n", "bandit_core/columns.py:1 imports serving"),
        ("serving/server.py", "def f():\n    import tfx_pipeline.config\n", "serving/server.py:2 imports tfx_pipeline.config"),
        ("serving/server.py", "from custom_components.trainer import agents\n", "serving/server.py:1 imports custom_components"),
        ("simulation/sim.py", "from serving import server\n", "simulation/sim.py:1 imports serving"),
        ("custom_components/evaluator/a.py", "from custom_components.trainer import agents\n", "components do not import each other"),
        ("custom_components/evaluator/a.py", "from ..trainer import agents\n", "components do not import each other"),
    ],
)
def test_an_upward_or_sideways_import_is_reported(tmp_path, relative, text, expected):
    for package in LAYERS:
        _write(tmp_path, f"{package}/__init__.py", "")
    _write(tmp_path, "custom_components/trainer/__init__.py", "")
    _write(tmp_path, "custom_components/trainer/agents.py", "from bandit_core import columns\n")
    _write(tmp_path, "custom_components/evaluator/__init__.py", "")
    _write(tmp_path, "serving/ok.py", "from bandit_core import columns\nfrom serving import ok\n")
    assert find_violations(tmp_path) == []
    _write(tmp_path, relative, text)
    violations = find_violations(tmp_path)
    assert len(violations) >= 1 and any(expected in v for v in violations), violations


def test_every_module_is_used_by_the_project():
    """No module that only a test imports: each is imported by another module or runs as a program."""
    modules = {}
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            modules[".".join(path.relative_to(REPO).with_suffix("").parts)] = path
    imported = set()
    for module, path in modules.items():
        for _, target in _imported_modules(path, module):
            imported.add(target)
    entry_points = {"tfx_pipeline.cli", "serving.__main__", "tfx_pipeline.local.emulator_launcher"}
    unused = sorted(
        module
        for module in modules
        if not module.endswith("__init__") and module not in imported and module not in entry_points
    )
    assert unused == []
