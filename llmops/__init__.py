"""airflow-llmops domain core: settings, storage, RAG preprocessing, training, evaluation, registry,
manifests and drift. Never imports Airflow: the trainer and Spark images run it without Airflow."""

__version__ = "0.1.0"
