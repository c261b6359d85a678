"""How expensive the project's DAG files are to parse, measured against a trivial DAG file.

What Airflow's dag-processor pays for a file is the file's own parse: the processor has `airflow.sdk`
loaded already, then imports and executes the file, which pulls in whatever the file imports (the
project's operators, the core settings, any provider) and builds the DAG. So each measurement runs in a
fresh Python process (nothing cached from an earlier file) that first imports `airflow.sdk`, then times
only the execution of the file (`parse_s`); it is repeated and the median kept. The same is done for a
trivial DAG file (one `@task`), and each file's `ratio` is its `parse_s` over the trivial one's. The
process total (`process_s`: interpreter, `airflow.sdk` and the parse) is reported beside it.

How modules are loaded (`bytecode_cache`, on by default): what a deployment pays is a parse with every
module's bytecode already compiled (pip compiles the project's wheel into the image, and a checkout
writes `__pycache__` on the first run). So by default one uncounted warm-up round fills a bytecode cache
(a private `PYTHONPYCACHEPREFIX`, with `PYTHONDONTWRITEBYTECODE` lifted) and every counted run loads the
file the way the dag-processor does (`SourceFileLoader`, which caches the file's bytecode too). The cold
method (`bytecode_cache=False`, `llmops bench parse --cold`) runs the file with `runpy` under this
environment's settings: under `PYTHONDONTWRITEBYTECODE=1` (as in the development environment) the
project's modules are then compiled from source in every process while Airflow's come compiled from
site-packages, which weighs on the project's files only.

A comparison is reported beside `ratio` (which the test enforces), so the lead can judge the method:

- `ratio_vs_cron`: against the same trivial DAG with a cron schedule. The project's DAGs run on crons;
  the trivial DAG loads Airflow's SDK cron timetable (and croniter) even with `schedule=None`, so the
  two trivial DAGs cost about the same, but a scheduled DAG also gets its Params validated at parse
  time (`DAG._validate_params` skips unscheduled DAGs).

With `floor` (`llmops bench parse --floor`) each file also gets a floor: a generated DAG file of the same
shape with none of the project's operators (`FLOOR_DAG`: the settings loaded as every DAG file loads them,
the file's Params rebuilt from their serialized form, as many `EmptyOperator`s as the file has tasks, on
the project's cron timetable). `floor_ratio` is its parse time over the trivial DAG's: what any DAG file of
this project with this trigger form and this many tasks pays before its own operators, so `ratio` minus
`floor_ratio` is what the file's operators and imports add.

The child also reports which heavy libraries the file pulled in (torch, pyspark, mlflow...): DAG files
must import none of them (STYLE.md, habit 1). This module never imports Airflow itself.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = (
    "torch", "transformers", "pyspark", "mlflow", "lm_eval", "sentence_transformers", "pymilvus", "peft",
)
DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"

TRIVIAL_DAG = '''
import pendulum
from airflow.sdk import DAG, task

with DAG("trivial", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    @task
    def hello():
        return 1

    hello()
'''

TRIVIAL_CRON_SCHEDULE = "0 * * * *"
TRIVIAL_CRON_DAG = TRIVIAL_DAG.replace("schedule=None", f"schedule={TRIVIAL_CRON_SCHEDULE!r}")
"""The trivial DAG on an hourly cron (the drift DAG's default schedule)."""

FLOOR_DAG = '''
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

from llmops_operators import airflow_settings
from llmops_operators.schedules import cron_schedule

settings = airflow_settings()
PARAMS = {params!r}

with DAG(
    "floor",
    schedule=cron_schedule({schedule!r}),
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    params={{k: Param(p["value"], description=p["description"], **p["schema"]) for k, p in PARAMS.items()}},
) as dag:
    previous = None
    for i in range({tasks}):
        task = EmptyOperator(task_id=f"t{{i}}")
        if previous is not None:
            previous >> task
        previous = task
'''
"""The floor of a DAG file (module docstring): its shape, with no project operator."""

MAX_RATIO = 1.5
"""The most a DAG file's own parse may cost, as a multiple of the trivial DAG's (the test enforces it)."""

_CHILD = r'''
import json, sys, time, runpy
t0 = time.perf_counter()
import airflow.sdk  # noqa: F401  (the dag-processor has it loaded before it parses any file)
path = sys.argv[1]
before = set(sys.modules)
t1 = time.perf_counter()
if LOADER:
    import importlib.machinery, importlib.util
    loader = importlib.machinery.SourceFileLoader("__dag_parse__", path)
    spec = importlib.util.spec_from_loader("__dag_parse__", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["__dag_parse__"] = module
    loader.exec_module(module)
else:
    runpy.run_path(path, run_name="__dag_parse__")
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
out = {"process": t2 - t0, "parse": t2 - t1, "heavy": heavy}
if SHAPE:
    import gc  # the file's DAG, named in it or not (`with DAG(...):` binds no name)
    dags = [o for o in gc.get_objects() if isinstance(o, airflow.sdk.DAG)]
    if len(dags) != 1:
        raise SystemExit(f"{path}: a floor needs exactly one DAG in the file, found {len(dags)}")
    params = dags[0].params
    out["shape"] = {"params": {k: params.get_param(k).serialize() for k in params}, "tasks": len(dags[0].tasks)}
print(json.dumps(out))
'''


def _measure(path: Path, env: dict[str, str], loader: bool = False, shape: bool = False) -> dict:
    """One fresh process: `airflow.sdk` imported, then `path` executed (`runpy`, or the dag-processor's
    `SourceFileLoader` when `loader`); its timings and heavy imports (and, with `shape`, its DAG's
    serialized Params and number of tasks, read after the timing)."""
    code = f"HEAVY = {HEAVY!r}\nLOADER = {loader!r}\nSHAPE = {shape!r}\n" + _CHILD
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"parsing {path} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(runs: list[dict]) -> dict:
    """Median `parse_s` and `process_s` of one file's runs, and the heavy libraries any of them loaded."""
    return {
        "parse_s": statistics.median(m["parse"] for m in runs),
        "process_s": statistics.median(m["process"] for m in runs),
        "heavy_imports": sorted({h for m in runs for h in m["heavy"]}),
    }


def parse_env() -> dict[str, str]:
    """The environment of the measuring processes: this one's, without Airflow's example DAGs."""
    env = dict(os.environ)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    return env


def floor_dag(shape: dict) -> str:
    """The source of the floor of a DAG file of `shape` (`{"params": {name: serialized Param}, "tasks": n}`)."""
    return FLOOR_DAG.format(params=shape["params"], schedule=TRIVIAL_CRON_SCHEDULE, tasks=shape["tasks"])


def measure(
    files: list[Path] | None = None, repeats: int = 5, bytecode_cache: bool = True, floor: bool = False
) -> dict:
    """Median own parse time of each DAG file and of a trivial DAG file, and each file's ratio to it
    (`ratio`) and to the trivial DAG on a cron (`ratio_vs_cron`).

    :param bytecode_cache: measure with every module's bytecode cached, as deployed (the default); False:
        the cold method, modules compiled as this environment says (module docstring).
    :param floor: also measure each file's floor (`floor_s`, `floor_ratio`; module docstring).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    files = sorted(files or [p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_")])
    env = parse_env()
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("AIRFLOW_HOME", tmp)
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL_DAG)
        trivial_cron = Path(tmp) / "trivial_cron_dag.py"
        trivial_cron.write_text(TRIVIAL_CRON_DAG)
        if bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        # Round-robin, the trivial file first in every round: a change in the machine's load during the
        # measurement then weighs on the trivial DAG and on the files alike, and the ratios stay fair.
        floors: dict[Path, Path] = {}
        if floor:  # each file's shape, read once (uncounted), and its floor file
            for i, f in enumerate(files):
                floors[f] = Path(tmp) / f"floor_{i}_{f.name}"
                floors[f].write_text(floor_dag(_measure(f, env, loader=bytecode_cache, shape=True)["shape"]))
        runs: dict[Path, list[dict]] = {p: [] for p in [trivial, trivial_cron, *files, *floors.values()]}
        if bytecode_cache:
            for p in runs:  # warm-up, not counted: fills the bytecode cache
                _measure(p, env, loader=True)
        for _ in range(repeats):
            for p in runs:
                runs[p].append(_measure(p, env, loader=bytecode_cache))
        base = _summary(runs[trivial])
        cron = _summary(runs[trivial_cron])
        result: dict = {
            "trivial": base, "trivial_cron": cron, "bytecode_cache": bytecode_cache,
            "max_ratio_allowed": MAX_RATIO, "files": {},
        }
        for f in files:
            t = _summary(runs[f])
            t["ratio"] = t["parse_s"] / base["parse_s"]
            t["ratio_vs_cron"] = t["parse_s"] / cron["parse_s"]
            if f in floors:
                t["floor_s"] = _summary(runs[floors[f]])["parse_s"]
                t["floor_ratio"] = t["floor_s"] / base["parse_s"]
            result["files"][f.name] = t
    result["max_ratio"] = max((t["ratio"] for t in result["files"].values()), default=0.0)
    result["heavy_imports"] = sorted({m for t in result["files"].values() for m in t["heavy_imports"]})
    return result
