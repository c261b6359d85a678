"""The runtime core does not depend on the development tools (`llmops/dev`), which the wheel leaves out.

Outside `llmops/dev`, no module imports `llmops.dev`; the CLI's command modules (`llmops/commands/`) may,
inside a handler only, so `llmops --help` and every runtime command work without it. Without it, a
development command fails with a clear message and exit code 2.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from llmops import cli

PACKAGE = Path(cli.__file__).resolve().parent
DEV = "llmops.dev"
# Command modules register the dev commands everywhere and import the tools when one runs.
LAZY_ALLOWED = PACKAGE / "commands"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute names an import statement imports (`from x import y` counts as x and x.y)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def dev_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str, bool]]:
    """(line, imported name, inside a function) for every import of `llmops.dev` in a module's source."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in _imported(child, module, is_package):
                    if name == DEV or name.startswith(DEV + "."):
                        found.append((child.lineno, name, in_function))
                        break
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(source), False)
    return found


def runtime_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "dev")


def test_the_walk_covers_the_runtime_core_and_not_the_dev_tools():
    names = {_module_name(p) for p in runtime_modules()}
    assert {"llmops.cli", "llmops.commands.training", "llmops.dataset.build", "llmops.deploy.smoke"} <= names
    assert not any(n == DEV or n.startswith(DEV + ".") for n in names)


def test_runtime_modules_never_import_the_dev_tools():
    offenders = []
    for path in runtime_modules():
        lazy_ok = path.is_relative_to(LAZY_ALLOWED)
        for line, name, in_function in dev_imports(path.read_text(), _module_name(path), path.name == "__init__.py"):
            if not (lazy_ok and in_function):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not offenders, "runtime code imports llmops.dev (move the piece it needs into the runtime module):\n" + \
        "\n".join(offenders)


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("from llmops.dev.sample_data import facts\n", "llmops.deploy.smoke", False, [(1, "llmops.dev.sample_data", False)]),
        ("import llmops.dev.bench.rag as b\n", "llmops.rag.job", False, [(1, "llmops.dev.bench.rag", False)]),
        ("from llmops import dev\n", "llmops.cli", False, [(1, "llmops.dev", False)]),
        ("from ..dev import traffic\n", "llmops.drift.monitor", False, [(1, "llmops.dev", False)]),
        ("from . import dev\n", "llmops", True, [(1, "llmops.dev", False)]),
        ("def f():\n    from llmops.dev.demo import main\n", "llmops.commands.x", False, [(2, "llmops.dev.demo", True)]),
        ("from llmops.dataset.build import prompt_for\nfrom . import devices\n", "llmops.deploy.smoke", False, []),
    ],
)
def test_dev_imports_finds_every_spelling(source, module, is_package, expected):
    assert dev_imports(source, module, is_package) == expected


DEV_COMMANDS = [
    ["sample-data", "--out", "{tmp}/sample"],
    ["sample-traffic", "--out", "{tmp}/traffic", "--kind", "in-domain"],
    ["base-model", "build", "--out", "{tmp}/model"],
    ["bench", "parse"],
    ["bench", "train", "--base-model", "{tmp}/m", "--dataset", "{tmp}/d"],
    ["bench", "preemption", "--base-model", "{tmp}/m", "--dataset", "{tmp}/d"],
    ["bench", "drift", "--base", "{tmp}", "--other", "{tmp}"],
    ["bench", "rag"],
    ["bench", "gate"],
    ["bench", "dataset"],
    ["bench", "s3"],
    ["bench", "lease"],
    ["bench", "orphan", "--base-model", "{tmp}/m", "--dataset", "{tmp}/d"],
    ["bench", "render"],
    ["bench", "smoke"],
    ["bench", "serve"],
]


@pytest.mark.parametrize("argv", DEV_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_dev_commands_without_the_dev_tools_fail_clearly(argv, tmp_path, monkeypatch, capsys):
    """As installed from the wheel: `llmops.dev` cannot be imported (None in sys.modules blocks it)."""
    for name in [n for n in sys.modules if n == DEV or n.startswith(DEV + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, DEV, None)
    code = cli.main([a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    err = capsys.readouterr().err
    assert f"llmops {argv[0]}: a development tool, available in a checkout (pip install -e .)" in err
    assert not (tmp_path / "sample").exists() and not (tmp_path / "model").exists()
