"""RAG preprocessing: extraction, chunking, the Spark job, snapshots, the Milvus index and search.

Entry points: `llmops preprocess` (`llmops.rag.job.run_preprocess`), `llmops search`
(`llmops.rag.search.search`), and for readers of the output `llmops.rag.snapshot.read_manifest` /
`read_snapshot`.
"""
