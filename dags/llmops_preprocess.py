"""
### RAG preprocessing: documents -> chunks -> embeddings -> Parquet snapshot + Milvus

Scheduled by the `llmops_landing` asset (new or changed documents) or triggered from the form.
Runs `llmops preprocess` on Spark: `local[*]` in mode `local`, a SparkApplication in mode `kubernetes`.
Only new or changed documents are read and embedded; a run without changes writes nothing.

Output (`[llmops] processed_uri`, default `<data_root>/processed`): `manifest.json`, `quarantine.json`,
`snapshots/<snapshot_id>/*.parquet`, and the chunks upserted into Milvus (`<processed>/milvus.db` locally).

A new snapshot emits the `llmops_corpus` asset with extra `snapshot_id`, `output_uri`, `chunks_total`,
`documents_indexed`. The form's values override the settings **for this run only**; changing the chunking
or the model re-processes every document.
"""

import pendulum
from airflow.sdk import DAG, Param

from llmops_operators import airflow_settings
from llmops_operators.assets import CORPUS, LANDING
from llmops_operators.rag import CorpusEventOperator
from llmops_operators.spark import spark_operator

settings = airflow_settings()

with DAG(
    dag_id="llmops_preprocess",
    schedule=[LANDING],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["llmops", "rag"],
    params={
        "input_uri": Param(
            settings.landing,
            type="string",
            minLength=1,
            title="Input URI",
            description="Folder or s3://bucket/prefix holding the documents (.txt .md .rst .html .pdf), read recursively.",
        ),
        "chunk_size": Param(
            settings.rag.chunk_size,
            type="integer",
            minimum=16,
            maximum=8192,
            title="Chunk size (tokens)",
            description="Most tokens per chunk, counted by the embedding model's tokenizer; at most the model's "
            "max sequence length minus 2 (254 for all-MiniLM-L6-v2).",
        ),
        "chunk_overlap": Param(
            settings.rag.chunk_overlap,
            type="integer",
            minimum=0,
            maximum=4096,
            title="Chunk overlap (tokens)",
            description="Tokens repeated at the start of the next chunk of the same section; smaller than the chunk size.",
        ),
        "embedding_model": Param(
            settings.rag.embedding_model,
            type="string",
            minLength=1,
            title="Embedding model",
            description="Sentence-transformers model: a hub id, a folder in the image, or all-MiniLM-L6-v2 (packaged, offline).",
        ),
        "embedding_backend": Param(
            settings.rag.embedding_backend,
            type="string",
            enum=["torch", "onnx", "onnx-int8", "onnx-int8-fused", "openvino"],
            title="Embedding backend",
            description="torch, onnx (fp32 export, equivalent to torch), onnx-int8 (faster, fails the quality guard) "
            "onnx-int8-fused (fused graph, part int8: faster, not torch-equivalent) "
            "or openvino (fp32 OpenVINO IR, equivalent to torch, fastest that passes the guard); "
            "searches use the index's backend.",
        ),
    },
):
    preprocess = spark_operator(
        task_id="preprocess",
        arguments=[
            "--input", "{{ params.input_uri }}",
            "--output", settings.processed,
            "--chunk-size", "{{ params.chunk_size }}",
            "--chunk-overlap", "{{ params.chunk_overlap }}",
            "--embedding-model", "{{ params.embedding_model }}",
            "--embedding-backend", "{{ params.embedding_backend }}",
        ],
        settings=settings,
    )
    CorpusEventOperator(task_id="publish_corpus", summary=preprocess.output, outlets=[CORPUS])
