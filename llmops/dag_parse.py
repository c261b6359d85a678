"""How expensive the project's DAG files are to parse, measured against a trivial DAG file.

Each measurement runs in a fresh Python process (so nothing is cached from an earlier file) and is
repeated; the median is kept. Two numbers per file:

- `cold_s`: the whole process: interpreter, Airflow, the file's imports and the DAG construction (what a
  fresh dag-processor child or `python dags/x.py` pays);
- `warm_s`: only executing the file, after the modules it imports are already loaded, which is what
  Airflow's dag-processor does with `[dag_processor] parsing_pre_import_modules = True` (the default).

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
DAGS_DIR = Path(__file__).resolve().parent.parent / "dags"

TRIVIAL_DAG = '''
import pendulum
from airflow.sdk import DAG, task

with DAG("trivial", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
    @task
    def hello():
        return 1

    hello()
'''

_CHILD = r'''
import ast, json, sys, time, runpy, importlib
t0 = time.perf_counter()
path, warm = sys.argv[1], sys.argv[2] == "warm"
if warm:
    import airflow.sdk  # noqa: F401
    # Pre-import what the file imports, as the dag-processor does (parsing_pre_import_modules).
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:
                pass
before = set(sys.modules)
t1 = time.perf_counter()
runpy.run_path(path, run_name="__dag_parse__")
t2 = time.perf_counter()
heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
print(json.dumps({"total": t2 - t0, "parse": t2 - t1, "heavy": heavy}))
'''


def _measure(path: Path, warm: bool, env: dict[str, str]) -> dict:
    code = f"HEAVY = {HEAVY!r}\n" + _CHILD
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"parsing {path} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(files: list[Path] | None = None, repeats: int = 5) -> dict:
    """Median cold and warm parse times of each DAG file and of a trivial DAG, and their ratios."""
    files = sorted(files or [p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_")])
    env = dict(os.environ)
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    with tempfile.TemporaryDirectory() as tmp:
        env.setdefault("AIRFLOW_HOME", tmp)
        trivial = Path(tmp) / "trivial_dag.py"
        trivial.write_text(TRIVIAL_DAG)

        def timings(path: Path) -> dict:
            cold = [_measure(path, False, env) for _ in range(repeats)]
            warm = [_measure(path, True, env) for _ in range(repeats)]
            return {
                "cold_s": statistics.median(m["total"] for m in cold),
                "warm_s": statistics.median(m["parse"] for m in warm),
                "heavy_imports": cold[0]["heavy"],
            }

        base = timings(trivial)
        result = {"trivial": base, "files": {}}
        for f in files:
            t = timings(f)
            t["cold_ratio"] = t["cold_s"] / base["cold_s"]
            t["warm_ratio"] = t["warm_s"] / base["warm_s"]
            result["files"][f.name] = t
    result["max_cold_ratio"] = max((t["cold_ratio"] for t in result["files"].values()), default=0.0)
    result["max_warm_ratio"] = max((t["warm_ratio"] for t in result["files"].values()), default=0.0)
    result["heavy_imports"] = sorted({m for t in result["files"].values() for m in t["heavy_imports"]})
    return result
