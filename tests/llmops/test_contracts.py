"""Every read of a step summary names a key its model (`llmops.contracts`) declares.

A summary travels as an XCom: its writer builds the model, its readers name keys. The readers are found
statically, so a renamed key fails here instead of in a DAG run:

- Jinja in the DAG files and operators: `ti.xcom_pull(task_ids='T')['key']`, `.get('key')`, `.key`,
  found in every string the file builds, constants, `+` concatenations, and f-strings resolved through
  the file's string variables and parameter defaults (`"{{ " + PROMOTED + "['version'] }}"`);
- Python: `ti.xcom_pull(task_ids="T")` (or the demo's `self.xcom(dag, run, "T")`), directly or through a
  variable, then `["key"]`, `.get("key")` or `"key" in`;
- Python: a variable bound to `Model.model_validate(...)` (or a helper given the model class), then
  `.attr`;
- the plugin's links, which read any step's summary: each key must be declared by some model.

The task ids map to models through `llmops.contracts.TASK_SUMMARIES`; a read of a task id not in it fails too.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmops import contracts
from llmops.contracts import TASK_SUMMARIES, Summary

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = ("dags", "operators")
"""Where Jinja templates that read XComs live."""
PYTHON_DIRS = ("dags", "operators", "plugins", "llmops")
"""Where Python reads summaries."""

UNMODELLED: dict[str, str] = {}
"""Task ids read without a model, and why."""

GENERIC_SUMMARIES = {("plugins/__init__.py", "links_from_summary", "summary")}
"""(file, function, parameter): any step's summary; each key read must be declared by some model."""

MODELS = {name: obj for name, obj in vars(contracts).items()
          if isinstance(obj, type) and issubclass(obj, Summary) and obj is not Summary}

PULL = re.compile(r"xcom_pull\(\s*task_ids\s*=\s*(['\"])(?P<task>[^'\"]*)\1\s*\)")
ACCESS = re.compile(
    r"(?:\s*or\s*\{\s*\}\s*\))?\s*(?:"
    r"\[\s*(['\"])(?P<k1>[^'\"]+)\1\s*\]"
    r"|\.get\(\s*(['\"])(?P<k2>[^'\"]+)\3"
    r"|\.(?!get\b)(?P<k3>[A-Za-z_]\w*)"
    r")"
)
UNKNOWN = "\x00"
"""Stands for the part of a string the scanner cannot resolve."""


@dataclass(frozen=True)
class Read:
    path: str
    line: int
    key: str
    task: str | None = None
    """The task whose XCom is read, or None with `model`."""
    model: str | None = None
    """A model read directly (`model_validate`), or `*` for any step's summary."""


# --- Jinja -----------------------------------------------------------------------------------------


def _strings(tree: ast.Module) -> dict[str, str]:
    """The file's string variables and string parameter defaults (last binding wins)."""
    env: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True):
                if isinstance(default, ast.Constant) and isinstance(default.value, str):
                    env[arg.arg] = default.value
            for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                if isinstance(default, ast.Constant) and isinstance(default.value, str):
                    env[arg.arg] = default.value
    for _ in range(3):  # variables built from variables
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _string(node.value, env)
                if value is not None:
                    env[node.targets[0].id] = value
    return env


def _string(node: ast.AST, env: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _string(node.left, env), _string(node.right, env)
        if left is None and right is None:
            return None
        return (left if left is not None else UNKNOWN) + (right if right is not None else UNKNOWN)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                resolved = _string(value.value, env)
                parts.append(resolved if resolved is not None else UNKNOWN)
            else:
                parts.append(_string(value, env) or "")
        return "".join(parts)
    return None


def template_reads(source: str, path: str) -> list[Read]:
    """The summary keys the Jinja strings of one Python file read."""
    tree = ast.parse(source)
    env = _strings(tree)
    reads: set[Read] = set()
    # Only whole string expressions: a piece of a concatenation or f-string is read as part of it.
    parts = {id(child) for node in ast.walk(tree) if isinstance(node, ast.BinOp | ast.JoinedStr | ast.FormattedValue)
             for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant | ast.BinOp | ast.JoinedStr) or id(node) in parts:
            continue
        text = _string(node, env)
        if not text or "xcom_pull" not in text:
            continue
        for pull in PULL.finditer(text):
            access = ACCESS.match(text, pull.end())
            key = access and (access["k1"] or access["k2"] or access["k3"])
            if key:
                reads.add(Read(path, node.lineno, key, task=pull["task"]))
        for start in (m.start() for m in re.finditer(r"xcom_pull\(", text)):
            if not PULL.match(text, start):
                reads.add(Read(path, node.lineno, text[start:start + 60], task=UNKNOWN))
    return sorted(reads, key=lambda r: (r.line, r.key))


# --- Python ----------------------------------------------------------------------------------------


def _pulled_task(node: ast.AST) -> str | None:
    """The task id of `ti.xcom_pull(task_ids="T")`, `self.xcom(dag, run, "T")`, or either `or {}`."""
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        return _pulled_task(node.values[0])
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    if node.func.attr == "xcom_pull":
        for kw in node.keywords:
            if kw.arg == "task_ids" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                return kw.value.value
    if node.func.attr == "xcom" and len(node.args) == 3:
        last = node.args[-1]
        if isinstance(last, ast.Constant) and isinstance(last.value, str):
            return last.value
    return None


def _returned_models(tree: ast.Module) -> dict[str, str]:
    """The file's functions annotated to return a model (`-> TrainSummary | None`)."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
            names = {n.id for n in ast.walk(node.returns) if isinstance(n, ast.Name)} & set(MODELS)
            if len(names) == 1:
                out[node.name] = names.pop()
    return out


def _validated_model(node: ast.AST, returns: dict[str, str] | None = None) -> str | None:
    """The model of `Model.model_validate(...)`, of a helper given the model class or annotated to return
    one, of `a if c else b`."""
    if isinstance(node, ast.IfExp):
        return _validated_model(node.body, returns) or _validated_model(node.orelse, returns)
    if isinstance(node, ast.BoolOp):
        return next((m for m in (_validated_model(v, returns) for v in node.values) if m), None)
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id in (returns or {}):
        return (returns or {})[func.id]
    if isinstance(func, ast.Attribute) and func.attr == "model_validate" and isinstance(func.value, ast.Name):
        return func.value.id if func.value.id in MODELS else None
    first = node.args[0] if node.args else None
    if isinstance(first, ast.Name) and first.id in MODELS and not (isinstance(func, ast.Name) and func.id in MODELS):
        return first.id
    return None


def _key_reads(node: ast.AST) -> tuple[ast.AST, str] | None:
    """(the read object, the key) of `obj["key"]`, `obj.get("key")`, `"key" in obj`."""
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return node.value, node.slice.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return node.func.value, node.args[0].value
    if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.In | ast.NotIn)
            and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
        return node.comparators[0], node.left.value
    return None


def _scope_walk(scope: ast.AST):
    """The nodes of one scope: a function's (or the module's) own, not those of the functions inside it."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            todo.extend(ast.iter_child_nodes(node))


def python_reads(source: str, path: str) -> list[Read]:
    """The summary keys and model attributes one Python file reads."""
    tree = ast.parse(source)
    returns = _returned_models(tree)
    reads: set[Read] = set()
    scopes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]
    for scope in scopes:
        pulled: dict[str, str] = {}
        validated: dict[str, str] = {}
        generic: set[str] = set()
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            generic = {p for f, fn, p in GENERIC_SUMMARIES if f == path and fn == scope.name}
        nodes = list(_scope_walk(scope))
        for node in nodes:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if (task := _pulled_task(node.value)) is not None:
                    pulled[name] = task
                elif (model := _validated_model(node.value, returns)) is not None:
                    validated[name] = model
        for node in nodes:
            if (hit := _key_reads(node)) is not None:
                obj, key = hit
                if (task := _pulled_task(obj)) is not None:
                    reads.add(Read(path, node.lineno, key, task=task))
                elif isinstance(obj, ast.Name) and obj.id in pulled:
                    reads.add(Read(path, node.lineno, key, task=pulled[obj.id]))
                elif isinstance(obj, ast.Name) and obj.id in generic:
                    reads.add(Read(path, node.lineno, key, model="*"))
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                if isinstance(node.value, ast.Name) and node.value.id in validated:
                    reads.add(Read(path, node.lineno, node.attr, model=validated[node.value.id]))
                elif (model := _validated_model(node.value, returns)) is not None:
                    reads.add(Read(path, node.lineno, node.attr, model=model))
    return sorted(reads, key=lambda r: (r.line, r.key))


# --- the check ---------------------------------------------------------------------------------------


def undeclared(reads: list[Read]) -> list[str]:
    """One line per read of a key its model does not declare: file, line, key, model."""
    problems = []
    for r in reads:
        where = f"{r.path}:{r.line}"
        if r.model == "*":
            if not any(r.key in m.model_fields for m in TASK_SUMMARIES.values()):
                problems.append(f"{where}: key {r.key!r} of a step summary is declared by no model in llmops.contracts")
        elif r.model is not None:
            model = MODELS[r.model]
            if r.key not in model.model_fields and not hasattr(model, r.key):
                problems.append(f"{where}: attribute {r.key!r} is not a field of {r.model}")
        elif r.task == UNKNOWN:
            problems.append(f"{where}: an XCom read this test cannot map to a model ({r.key!r}): "
                            "write task_ids='<task id>' as a string constant")
        elif r.task in UNMODELLED:
            continue
        elif r.task not in TASK_SUMMARIES:
            problems.append(f"{where}: reads {r.key!r} of task {r.task!r}, which has no model in "
                            "llmops.contracts.TASK_SUMMARIES")
        elif r.key not in TASK_SUMMARIES[r.task].model_fields:
            problems.append(f"{where}: key {r.key!r} of task {r.task!r} is not declared by "
                            f"{TASK_SUMMARIES[r.task].__name__}")
    return problems


def project_reads() -> list[Read]:
    reads: list[Read] = []
    for folder in PYTHON_DIRS:
        for file in sorted((REPO / folder).rglob("*.py")):
            path = file.relative_to(REPO).as_posix()
            source = file.read_text()
            reads += python_reads(source, path)
            if folder in TEMPLATE_DIRS:
                reads += template_reads(source, path)
    return reads


def test_every_summary_read_is_declared_by_its_model():
    reads = project_reads()
    assert undeclared(reads) == []
    found = {(r.path, r.task, r.key) for r in reads}
    # The scanner sees the reads that matter (so an empty result cannot pass for a clean one): Jinja built
    # by concatenation, an f-string's task id from a parameter default, Python pulls, the demo's.
    for expected in [
        ("dags/llmops_finetune.py", "register", "version"),
        ("dags/llmops_finetune.py", "register", "registered_model_name"),
        ("dags/llmops_finetune.py", "resolve_inputs", "eval_dataset"),
        ("dags/llmops_finetune.py", "check_trigger", "dataset_uri"),
        ("dags/llmops_finetune.py", "render_manifests", "manifests_uri"),
        ("dags/llmops_dataset.py", "dataset_inputs", "steer"),
        ("operators/evaluation.py", "train", "adapter_dir"),
        ("operators/evaluation.py", "train", "mlflow_run_id"),
        ("operators/evaluation.py", "evaluate_champion", "output"),
        ("operators/approval.py", "register", "model_uri"),
        ("llmops/dev/demo.py", "detect_drift", "p_value"),
    ]:
        assert expected in found, expected
    models = {(r.path, r.model, r.key) for r in reads if r.model}
    assert ("operators/rag.py", "PreprocessSummary", "snapshot_changed") in models
    assert ("llmops/reports/lineage.py", "DeploySummary", "model_dump") in models
    assert ("plugins/__init__.py", "*", "adapter_dir") in models
    assert ("llmops/commands/evaluation.py", "TrainSummary", "adapter_dir") in models
    assert len(reads) > 60


def test_an_undeclared_key_fails_naming_file_key_and_model():
    dag = '''
PULLED = "ti.xcom_pull(task_ids='train')"
args = ["--adapter", "{{ " + PULLED + "['adapter_path'] }}", "{{ ti.xcom_pull(task_ids='gate').verdict }}"]

def resolve(ti=None, train_task_id="promote"):
    decided = ti.xcom_pull(task_ids="check_trigger") or {}
    other = f"{{{{ ti.xcom_pull(task_ids='{train_task_id}')['model'] }}}}"
    return decided.get("dataset"), ti.xcom_pull(task_ids="nowhere")["x"]
'''
    reads = template_reads(dag, "dags/broken.py") + python_reads(dag, "dags/broken.py")
    assert undeclared(reads) == [
        "dags/broken.py:3: key 'adapter_path' of task 'train' is not declared by TrainSummary",
        "dags/broken.py:3: key 'verdict' of task 'gate' is not declared by GateSummary",
        "dags/broken.py:7: key 'model' of task 'promote' is not declared by PromoteSummary",
        "dags/broken.py:8: key 'dataset' of task 'check_trigger' is not declared by TriggerSummary",
        "dags/broken.py:8: reads 'x' of task 'nowhere', which has no model in llmops.contracts.TASK_SUMMARIES",
    ]


def test_an_undeclared_attribute_or_generic_key_fails():
    source = '''
def execute(self):
    summary = PreprocessSummary.model_validate(self.summary)
    return summary.chunks, PreprocessSummary.model_validate({}).snapshot_id

def links_from_summary(summary):
    return summary.get("report_uri"), summary.get("report_url")
'''
    reads = python_reads(source, "plugins/__init__.py")
    assert undeclared(reads) == [
        "plugins/__init__.py:4: attribute 'chunks' is not a field of PreprocessSummary",
        "plugins/__init__.py:7: key 'report_url' of a step summary is declared by no model in llmops.contracts",
    ]


def test_a_pull_the_scanner_cannot_read_fails():
    reads = template_reads('x = "{{ ti.xcom_pull(task_ids=name)[\'version\'] }}"\n', "dags/odd.py")
    assert undeclared(reads) == [
        "dags/odd.py:1: an XCom read this test cannot map to a model (\"xcom_pull(task_ids=name)['version'] }}\"): "
        "write task_ids='<task id>' as a string constant"
    ]


def test_event_extras_copy_declared_fields():
    from llmops.drift.monitor import RETRAIN_EXTRA_KEYS
    from llmops_operators.rag import CORPUS_EVENT_KEYS

    assert set(RETRAIN_EXTRA_KEYS) <= set(contracts.DriftSummary.model_fields)
    assert set(CORPUS_EVENT_KEYS) <= set(contracts.PreprocessSummary.model_fields)


@pytest.mark.parametrize("model", sorted(MODELS), ids=str)
def test_models_forbid_extra_keys_and_document_every_field(model):
    from llmops.docstrings import describe

    cls = describe(MODELS[model])
    assert cls.model_config["extra"] == "forbid"
    assert [f for f, info in cls.model_fields.items() if not info.description] == []


def test_writer_rejects_an_undeclared_key():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="chunks\n  Extra inputs are not permitted"):
        contracts.DatasetInputs(trigger="manual", steer="", chunks=3)


def test_register_checks_the_training_summary_against_its_model(capsys):
    from llmops.cli import main

    code = main(["register", "--training-summary", '{"mlflow_run_id": "r1", "adapter_path": "/a"}'])
    err = capsys.readouterr().err
    assert code == 2
    assert "--training-summary (the train step's summary)" in err and "adapter_path" in err and "adapter_dir" in err


def test_a_key_renamed_in_the_real_dag_and_operator_fails():
    """The real files, one key renamed in memory: the check names the file, the key and the model."""
    dag = (REPO / "dags" / "llmops_finetune.py").read_text()
    assert "['eval_dataset']" in dag
    problems = undeclared(template_reads(dag.replace("['eval_dataset']", "['eval_data']"), "dags/llmops_finetune.py"))
    assert len(problems) == 1
    assert "key 'eval_data' of task 'resolve_inputs' is not declared by ResolvedInputs" in problems[0]

    operator = (REPO / "operators" / "rag.py").read_text()
    assert "summary.snapshot_changed" in operator
    problems = undeclared(python_reads(operator.replace("summary.snapshot_changed", "summary.changed"), "operators/rag.py"))
    assert len(problems) == 1 and "attribute 'changed' is not a field of PreprocessSummary" in problems[0]
