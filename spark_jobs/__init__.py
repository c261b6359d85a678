"""Installed as the package `llmops_spark_jobs`: `preprocess.py` is the file spark-submit runs
(`llmops.resources.spark_entrypoint()`; the worker image links it to /opt/llmops/spark_jobs/)."""
