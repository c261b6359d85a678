"""Development tools, apart from the runtime core: the local demo (`make demo`), the benchmarks
(`llmops bench ...`), the sample data (`llmops sample-data`), the tiny local base model
(`llmops base-model build`), sample traffic (`llmops sample-traffic`) and the DAG parse-time measure.

Nothing outside this package imports it at module level (tests/llmops/test_layering.py); the commands
in `llmops/commands/` import it inside their handlers. The wheel, and so the trainer/worker and Airflow
images, leaves it out (setup.py): in a checkout (`pip install -e .`) it is importable as usual.
"""
