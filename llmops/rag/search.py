"""Search a preprocessing output's chunk index: the manifest names the vector store, collection and model."""

from __future__ import annotations

from typing import Any

from llmops.exceptions import ConfigError


def search(index_uri: str, query: str, k: int = 5, backend: str | None = None) -> list[dict[str, Any]]:
    """Top-k chunks for a query: [{source, score, text, heading_path, chunk_id, char_start, char_end}],
    best first; score is the cosine similarity.

    The query is embedded by the index's backend (its manifest's `embedding_backend`); another `backend`
    is accepted only when proven equivalent (`llmops.embedding.EQUIVALENT_BACKENDS`), else refused."""
    from llmops.embedding import check_backend, check_query_backend, embed
    from llmops.rag.snapshot import embedding_backend, read_manifest
    from llmops.rag.vector_store import VectorStore

    if not query.strip():
        raise ConfigError("the search query is empty: give some text to search for")
    if k < 1:
        raise ConfigError(f"-k = {k}: ask for at least one chunk")
    manifest = read_manifest(index_uri)
    store = manifest["vector_store"]
    index_backend = embedding_backend(manifest)
    if backend is not None:
        check_query_backend(index_backend, check_backend(backend, "--embedding-backend"), index_uri)
    vector = embed([query], manifest["embedding_model"], backend=backend or index_backend)[0]
    with VectorStore(store["uri"], store["collection"]) as vs:
        hits = vs.search(vector, k)
    return [
        {
            "source": h.get("source"),
            "score": round(h["score"], 6),
            "text": h.get("text", ""),
            "heading_path": h.get("heading_path", ""),
            "chunk_id": h.get("chunk_id"),
            "char_start": h.get("char_start"),
            "char_end": h.get("char_end"),
        }
        for h in hits
    ]
