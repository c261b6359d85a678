"""`llmops dataset build`: fine-tuning rows and evaluation items from a corpus snapshot, versioned.

Layout under a dataset root (local folder or `s3://`), shared with the evaluation and lifecycle steps:

    items/<generator-config-hash>/<chunk_id>.jsonl   the item cache: one file per chunk, written atomically
                                                     as soon as the chunk is generated (a killed build re-run
                                                     reuses it: no teacher call is paid twice)
    versions/<dataset_hash>/train/part-00000.parquet
    versions/<dataset_hash>/eval/part-00000.parquet
    versions/<dataset_hash>/dataset.json             the version's manifest (lineage, documents, counts)
    latest.json                                      {"dataset_hash", "dataset_uri"}: written last (commit point)

The dataset hash is a content hash of the rows, so the same corpus under the same generator gives the
same hash and writes nothing. A rebuild generates only for chunks without a cache file (new or changed
text: a chunk id is a hash of its text); the items of chunks gone from the snapshot are not in the rows.

Splits are by item (a question and all its phrasings), chosen by a hash of the item id, so an item keeps
its split across versions; a safety net moves to train any eval item one of whose normalised prompts
is also a train prompt. Eval rows carry a slice: `new` when the item's document is absent from the parent
version (the latest version in the same root over a different set of documents), `retained` otherwise.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from llmops import storage
from llmops.contracts import DatasetBuildSummary
from llmops.dataset.generators import Chunk, Context, Generated, Generator, Item, config_hash, normalise
from llmops.exceptions import ConfigError, DatasetError, InputDataError

log = logging.getLogger(__name__)

LATEST = "latest.json"
MANIFEST = "dataset.json"
EVAL_FRACTION = 0.2
N_CHOICES = 4
DISTRACTOR_CHUNKS = 2

ROW_COLUMNS = [
    "item_id", "phrasing", "chunk_id", "doc_id", "doc_hash", "generator", "generator_version", "split", "slice",
    "kind", "answer_kind", "question", "prompt", "answer", "completion", "choices", "label",
]


def prompt_for(question: str) -> str:
    """The prompt format shared by fine-tuning rows, evaluation tasks and the smoke test."""
    return f"Question: {question}\nAnswer:"


def arrow_schema():
    import pyarrow as pa

    return pa.schema([
        ("item_id", pa.string()), ("phrasing", pa.int32()), ("chunk_id", pa.string()), ("doc_id", pa.string()),
        ("doc_hash", pa.string()), ("generator", pa.string()), ("generator_version", pa.string()),
        ("split", pa.string()), ("slice", pa.string()), ("kind", pa.string()), ("answer_kind", pa.string()),
        ("question", pa.string()), ("prompt", pa.string()), ("answer", pa.string()), ("completion", pa.string()),
        ("choices", pa.list_(pa.string())), ("label", pa.int32()),
    ])


@dataclass(frozen=True)
class Steer:
    """A drift report's pointer at the chunks the next build should spend its budget on."""

    drift_event: str
    chunk_ids: tuple[str, ...]

    @classmethod
    def read(cls, uri: str) -> Steer:
        storage.check_uri(uri, "--steer")
        try:
            obj = json.loads(storage.read_text(uri))
        except FileNotFoundError:
            raise InputDataError(f"steer file {uri} does not exist") from None
        except json.JSONDecodeError as exc:
            raise InputDataError(f"steer file {uri} is not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("drift_event"), str) or not isinstance(
            obj.get("chunk_ids"), list
        ) or not all(isinstance(c, str) for c in obj["chunk_ids"]):
            raise InputDataError(
                f"steer file {uri} must be a JSON object with a string drift_event and a list of string "
                'chunk_ids, e.g. {"drift_event": "...", "chunk_ids": ["..."]}'
            )
        return cls(obj["drift_event"], tuple(obj["chunk_ids"]))


def version_uri(root: str, dataset_hash: str) -> str:
    return storage.join(root, "versions", dataset_hash)


def read_latest(root: str) -> dict | None:
    """The root's latest version manifest, or None for a new root."""
    try:
        latest = json.loads(storage.read_text(storage.join(root, LATEST)))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{storage.join(root, LATEST)} is not valid JSON ({exc.msg}): delete it to rebuild") from None
    return read_version_manifest(root, latest["dataset_hash"])


def read_version_manifest(root: str, dataset_hash: str) -> dict | None:
    try:
        return json.loads(storage.read_text(storage.join(version_uri(root, dataset_hash), MANIFEST)))
    except FileNotFoundError:
        return None


def _cache_uri(root: str, gen_hash: str, chunk_id: str) -> str:
    return storage.join(root, "items", gen_hash, f"{chunk_id}.jsonl")


def _read_cache(uri: str) -> list[dict] | None:
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        return None
    lines = text.splitlines()
    # The last line is the chunk's footer: a file without it was not written by a finished generation.
    if not lines or json.loads(lines[-1]).get("footer") is not True:
        return None
    return [json.loads(line) for line in lines[:-1]]


def _write_cache(uri: str, items: list[Item], quarantined: list[dict], calls: int) -> None:
    lines = [json.dumps(i.to_json(), sort_keys=True) for i in items]
    lines += [json.dumps({"quarantined": q}, sort_keys=True) for q in quarantined]
    lines.append(json.dumps({"footer": True, "items": len(items), "quarantined": len(quarantined), "calls": calls}))
    storage.write_text(uri, "\n".join(lines) + "\n")


def _split_of(item_id: str, eval_fraction: float) -> str:
    h = int(hashlib.sha256(f"split:{item_id}".encode()).hexdigest()[:8], 16) / 2**32
    return "eval" if h < eval_fraction else "train"


def _distractor_index(frame) -> dict[str, list[str]]:
    """chunk_id -> ids of the most similar chunks of other documents (cosine on the snapshot embeddings).

    The snapshot holds the very vectors the Milvus index serves; reading them here gives the same nearest
    neighbours without opening the index (Milvus Lite allows one process) and deterministically.
    """
    import numpy as np

    if frame.empty:
        return {}
    vectors = np.stack(frame["embedding"].to_numpy()).astype("float32")
    sources = frame["source"].to_numpy()
    ids = frame["chunk_id"].tolist()
    out: dict[str, list[str]] = {}
    for start in range(0, len(ids), 512):
        sims = vectors[start:start + 512] @ vectors.T
        for row, i in enumerate(range(start, min(start + 512, len(ids)))):
            order = np.argsort(-sims[row], kind="stable")
            out[ids[i]] = [ids[j] for j in order if sources[j] != sources[i]][:DISTRACTOR_CHUNKS]
    return out


@dataclass(frozen=True)
class _Build:
    """One build's inputs, checked: the corpus it reads, the root it writes, the generator and its cache key."""

    corpus_uri: str
    root: str
    generator: Generator
    gen_hash: str
    """The generator's config hash: the item cache's folder and part of the version's lineage."""
    steer: Steer | None
    budget: int | None
    eval_fraction: float
    before_write: Callable[[], None] | None


@dataclass(frozen=True)
class _Snapshot:
    """The corpus's current snapshot as the build reads it: its chunks in document order, their documents."""

    manifest: dict[str, Any]
    frame: Any
    """The snapshot's rows (pandas), sorted by document and chunk index."""
    chunks: dict[str, Chunk]
    doc_of: dict[str, tuple[str, str]]
    """chunk_id -> (doc_id, doc_hash)."""
    documents: dict[str, str | None]
    """doc_id -> document hash: the documents of the version (the lineage its parent is compared on)."""


@dataclass(frozen=True)
class _Generated:
    """What the generation phase left: every snapshot chunk's cache lines and what this build paid for."""

    cached: dict[str, list[dict]]
    """chunk_id -> its cache lines (items, then quarantined candidates), read or just generated."""
    results: dict[str, Generated]
    """The chunks generated by this build and their outputs."""
    pending: list[str]
    """Chunks left for a later build by the budget."""
    seconds: float


@dataclass(frozen=True)
class _Items:
    """One item per item id (the answer its document's statements vote for) and each item's split."""

    items: dict[str, tuple[str, Item]]
    """item_id -> (the chunk it is taken from, the item)."""
    split: dict[str, str]
    quarantined: list[dict]
    reused: int
    ambiguous: int
    moved: int


@dataclass(frozen=True)
class _Version:
    """The version being built: its rows by split, their content hash, its folder and counts."""

    dataset_hash: str
    uri: str
    train_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    counts: dict[str, int]
    parent_hash: str | None


def build_dataset(
    corpus_uri: str,
    root: str,
    generator: Generator,
    steer_uri: str | None = None,
    budget: int | None = None,
    eval_fraction: float = EVAL_FRACTION,
    before_write: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Build (or find) the dataset version of the corpus's current snapshot; return the summary.

    `before_write` runs before the version's files and again before `latest.json` (the commit point):
    the command passes its lease's `verify`, so a writer whose lease was taken over stops before writing."""
    started = time.monotonic()
    storage.check_uri(root, "--out")
    if budget is not None and budget < 0:
        raise ConfigError(f"--budget {budget}: give the most chunks to generate for (0 or more)")
    if not 0 < eval_fraction < 1:
        raise ConfigError(f"eval_fraction {eval_fraction}: must be between 0 and 1")
    steer = Steer.read(steer_uri) if steer_uri else None
    snap = _read_snapshot(corpus_uri, generator)
    build = _Build(corpus_uri, root, generator, config_hash(generator), steer, budget, eval_fraction, before_write)
    gen = _generate(build, snap)
    chosen = _choose_items(build, snap, gen)
    latest, parent = _latest_and_parent(build, snap)
    version = _version(build, snap, chosen, parent)
    written = _commit(build, snap, gen, chosen, version, latest)
    summary = DatasetBuildSummary(**{
        "dataset_uri": version.uri,
        "dataset_root": root,
        "dataset_hash": version.dataset_hash,
        "written": written,
        "snapshot_id": snap.manifest["snapshot_id"],
        "generator": generator.name,
        "generator_version": generator.version,
        "generator_config_hash": build.gen_hash,
        **version.counts,
        **_chunk_counts(snap, gen, chosen, latest),
        "parent_dataset_hash": version.parent_hash,
        "steered_by": steer.drift_event if steer else None,
        "generation_seconds": round(gen.seconds, 3),
        "seconds": round(time.monotonic() - started, 3),
    }).to_json()
    counts = version.counts
    log.info("dataset %s: %d train rows, %d eval rows (%d new, %d retained); %d chunks generated, %d pending",
             version.dataset_hash, counts["rows_train"], counts["rows_eval"], counts["rows_eval_new"],
             counts["rows_eval_retained"], len(gen.results), len(gen.pending))
    return summary


def _read_snapshot(corpus_uri: str, generator: Generator) -> _Snapshot:
    """The corpus's manifest and snapshot rows (with the embeddings only when the generator needs distractors)."""
    from llmops.rag.snapshot import read_manifest, read_snapshot

    corpus = read_manifest(corpus_uri)
    columns = ["chunk_id", "source", "doc_hash", "chunk_index", "heading_path", "text"]
    if generator.needs_distractors:
        columns.append("embedding")
    frame = read_snapshot(corpus_uri, columns=columns).sort_values(["source", "chunk_index"], kind="stable")
    frame = frame.reset_index(drop=True)
    chunks = {r.chunk_id: Chunk(r.chunk_id, r.text, r.heading_path, r.source) for r in frame.itertuples()}
    doc_of = dict(zip(frame["chunk_id"], zip(frame["source"], frame["doc_hash"], strict=True), strict=True))
    documents = {src: entry.get("hash") for src, entry in sorted(corpus.get("documents", {}).items())}
    sources = set(frame["source"])
    documents = {src: h for src, h in documents.items() if src in sources} or documents
    return _Snapshot(corpus, frame, chunks, doc_of, documents)


def _generate(build: _Build, snap: _Snapshot) -> _Generated:
    """Read the item cache; generate the chunks without a cache file (steered ones first, at most the budget)."""
    root, gen_hash, generator = build.root, build.gen_hash, build.generator
    cached: dict[str, list[dict]] = {}
    for cid in snap.chunks:
        got = _read_cache(_cache_uri(root, gen_hash, cid))
        if got is not None:
            cached[cid] = got
    todo = [cid for cid in snap.chunks if cid not in cached]
    if build.steer:
        steered = [c for c in build.steer.chunk_ids if c in snap.chunks and c not in cached]
        todo = list(dict.fromkeys(steered + todo))
    budget = build.budget
    pending = todo[budget:] if budget is not None else []
    todo = todo[:budget] if budget is not None else todo

    distractors = _distractor_index(snap.frame) if generator.needs_distractors and todo else {}
    t_gen = time.monotonic()

    def run(cid: str) -> tuple[str, Generated]:
        ctx = Context(distractors=tuple(snap.chunks[d] for d in distractors.get(cid, [])))
        out = generator.generate(snap.chunks[cid], ctx)
        _write_cache(_cache_uri(root, gen_hash, cid), out.items, out.quarantined, out.calls)
        return cid, out

    results = _run_all(run, todo, max(1, int(getattr(generator, "max_workers", 1))))
    for cid, out in results.items():
        cached[cid] = [i.to_json() for i in out.items] + [{"quarantined": q} for q in out.quarantined]
    return _Generated(cached, results, pending, time.monotonic() - t_gen)


def _run_all(run: Callable[[str], tuple[str, Generated]], todo: list[str], workers: int) -> dict[str, Generated]:
    """`run` over the chunks, in a pool of `workers` threads; the first failure cancels the chunks not started."""
    results: dict[str, Generated] = {}
    if workers == 1:
        for cid in todo:
            results[cid] = run(cid)[1]
        return results
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-gen") as pool:
        futures = {pool.submit(run, cid) for cid in todo}
        try:
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in done:
                    cid, out = f.result()
                    results[cid] = out
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results


def _choose_items(build: _Build, snap: _Snapshot, gen: _Generated) -> _Items:
    """Each item id's answer by vote across its occurrences (a tie drops the item as ambiguous); its split."""
    order = {cid: i for i, cid in enumerate(snap.chunks)}
    occurrences: dict[str, list[tuple[int, str, Item]]] = defaultdict(list)
    quarantined: list[dict] = []
    reused = 0
    for cid in sorted(gen.cached, key=lambda c: order.get(c, 1 << 62)):
        if cid not in snap.chunks:
            continue
        for obj in gen.cached[cid]:
            if "quarantined" in obj:
                quarantined.append({"chunk_id": cid, **obj["quarantined"]})
                continue
            item = Item.from_json(obj)
            occurrences[item.item_id].append((order[cid], cid, item))
            if cid not in gen.results:
                reused += 1
    items: dict[str, tuple[str, Item]] = {}
    ambiguous = 0
    for iid, occ in occurrences.items():
        # One vote per statement of a document: chunk overlaps repeat a statement, they do not confirm it.
        votes = Counter(a for a, _, _ in {(o[2].answer, snap.doc_of[o[1]][0], o[2].evidence) for o in occ})
        (best, n), *rest = votes.most_common()
        if rest and rest[0][1] == n:
            ambiguous += 1
            continue
        _, cid, item = next(o for o in occ if o[2].answer == best)
        items[iid] = (cid, item)
    split, moved = _splits(items, build.eval_fraction)
    return _Items(items, split, quarantined, reused, ambiguous, moved)


def _splits(items: dict[str, tuple[str, Item]], eval_fraction: float) -> tuple[dict[str, str], int]:
    """Each item's split by a hash of its id; the eval items with a prompt also in train move to train.

    Returns the splits and how many items moved."""
    split = {iid: ("train" if it.trainable_only else _split_of(iid, eval_fraction)) for iid, (_, it) in items.items()}
    train_prompts = {normalise(q) for iid, (_, it) in items.items() if split[iid] == "train" for q in it.questions}
    moved = 0
    for iid, (_, it) in items.items():
        if split[iid] == "eval" and any(normalise(q) in train_prompts for q in it.questions):
            split[iid] = "train"
            moved += 1
    # An item moved to train adds prompts too: repeat until no eval prompt is among train prompts.
    while True:
        train_prompts = {normalise(q) for iid, (_, it) in items.items() if split[iid] == "train" for q in it.questions}
        clash = [iid for iid, (_, it) in items.items()
                 if split[iid] == "eval" and any(normalise(q) in train_prompts for q in it.questions)]
        if not clash:
            break
        for iid in clash:
            split[iid] = "train"
            moved += 1
    return split, moved


def _latest_and_parent(build: _Build, snap: _Snapshot) -> tuple[dict | None, dict | None]:
    """The root's latest version manifest and the parent of the version being built (None for either)."""
    latest = read_latest(build.root)
    parent = latest
    if (latest is not None and latest.get("documents") == snap.documents
            and latest.get("generator_config_hash") == build.gen_hash):
        # The same corpus as the latest version (a re-run, or a budgeted build continuing): keep its parent,
        # so the slices (and so the hash) do not depend on how many times the build ran.
        parent_hash = latest.get("parent_dataset_hash")
        parent = read_version_manifest(build.root, parent_hash) if parent_hash else None
    return latest, parent


class _Choices:
    """Multiple-choice options for eval items: distractors drawn from the other items' answers.

    Pools per answer kind hold one answer per normalised form (the first by item id)."""

    def __init__(self, items: dict[str, tuple[str, Item]]):
        self.norm: dict[str, str] = {}
        by_kind: dict[str, dict[str, str]] = defaultdict(dict)
        for _iid, (_, it) in sorted(items.items()):
            if not it.trainable_only:
                by_kind[it.answer_kind].setdefault(self.norm.setdefault(it.answer, normalise(it.answer)), it.answer)
        self.pools = {kind: list(answers.values()) for kind, answers in by_kind.items()}
        self.all_answers = sorted({a for pool in self.pools.values() for a in pool})

    def draw(self, rng: random.Random, pool: list[str], exclude: set[str], n: int) -> list[str]:
        norm = self.norm
        picked: list[str] = []
        # A few more than needed: the excluded forms (and, across kinds, repeats of a form) are skipped.
        for i in rng.sample(range(len(pool)), min(len(pool), n + len(exclude) + 3)):
            if len(picked) < n and norm[pool[i]] not in exclude:
                picked.append(pool[i])
                exclude = exclude | {norm[pool[i]]}
        return picked

    def of(self, iid: str, it: Item) -> tuple[list[str], int]:
        """The item's choices (its answer at a seeded position among N_CHOICES - 1 distractors) and its label:
        from its own answer kind first, then from every kind."""
        norm = self.norm
        rng = random.Random(f"choices:{iid}")
        picked = self.draw(rng, self.pools[it.answer_kind], {norm[it.answer]}, N_CHOICES - 1)
        if len(picked) < N_CHOICES - 1:
            taken = {norm[it.answer]} | {norm[a] for a in picked}
            picked += self.draw(rng, self.all_answers, taken, N_CHOICES - 1 - len(picked))
        label = rng.randrange(len(picked) + 1)
        return picked[:label] + [it.answer] + picked[label:], label


def _rows(build: _Build, snap: _Snapshot, chosen: _Items, parent_docs: set[str]) -> list[dict[str, Any]]:
    """One row per phrasing of each item, by item id; eval rows carry their slice, choices and label."""
    generator = build.generator
    choices_of = _Choices(chosen.items)
    rows: list[dict[str, Any]] = []
    for iid in sorted(chosen.items):
        cid, it = chosen.items[iid]
        doc_id, doc_hash = snap.doc_of[cid]
        sp = chosen.split[iid]
        choices, label, slice_ = None, None, None
        if sp == "eval":
            slice_ = "retained" if doc_id in parent_docs else "new"
            choices, label = choices_of.of(iid, it)
        for k, q in enumerate(it.questions):
            rows.append({
                "item_id": iid, "phrasing": k, "chunk_id": cid, "doc_id": doc_id, "doc_hash": doc_hash,
                "generator": generator.name, "generator_version": generator.version, "split": sp,
                "slice": slice_, "kind": it.kind, "answer_kind": it.answer_kind, "question": q,
                "prompt": prompt_for(q), "answer": it.answer, "completion": f" {it.answer}",
                "choices": choices, "label": label,
            })
    return rows


def _counts(train_rows: list[dict], eval_rows: list[dict], chosen: _Items) -> dict[str, int]:
    """The version's row and item counts (its manifest's `counts`, and part of the summary)."""
    return {
        "rows_train": len(train_rows),
        "rows_eval": len(eval_rows),
        "rows_eval_new": sum(r["slice"] == "new" for r in eval_rows),
        "rows_eval_retained": sum(r["slice"] == "retained" for r in eval_rows),
        "items_train": len({r["item_id"] for r in train_rows}),
        "items_eval": len({r["item_id"] for r in eval_rows}),
        "items_ambiguous": chosen.ambiguous,
        "items_moved_to_train": chosen.moved,
        "items_quarantined": len(chosen.quarantined),
    }


def _version(build: _Build, snap: _Snapshot, chosen: _Items, parent: dict | None) -> _Version:
    """The rows of the version, split; its hash is a content hash of the rows. No training row fails."""
    rows = _rows(build, snap, chosen, set((parent or {}).get("documents", {})))
    train_rows = [r for r in rows if r["split"] == "train"]
    eval_rows = [r for r in rows if r["split"] == "eval"]
    if not train_rows:
        raise InputDataError(
            f"corpus {build.corpus_uri} gave no training rows ({len(snap.chunks)} chunks, "
            f"{len(chosen.quarantined)} items quarantined): check the snapshot has text, or the generator's "
            "quarantine reasons"
        )
    dataset_hash = hashlib.sha256(
        json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()[:16]
    return _Version(dataset_hash, version_uri(build.root, dataset_hash), train_rows, eval_rows,
                    _counts(train_rows, eval_rows, chosen), (parent or {}).get("dataset_hash"))


def _commit(build: _Build, snap: _Snapshot, gen: _Generated, chosen: _Items, version: _Version,
            latest: dict | None) -> bool:
    """Write the version (its splits, then its manifest) unless it exists, then point `latest.json` at it
    (the commit point); `before_write` runs before each. Returns whether the version was written."""
    generator, steer = build.generator, build.steer
    written = read_version_manifest(build.root, version.dataset_hash) is None
    if written:
        manifest = {
            "dataset_hash": version.dataset_hash,
            "dataset_uri": version.uri,
            "snapshot_id": snap.manifest["snapshot_id"],
            "generator": generator.name,
            "generator_version": generator.version,
            "generator_config": generator.config(),
            "generator_config_hash": build.gen_hash,
            "parent_dataset_hash": version.parent_hash,
            "documents": snap.documents,
            "chunk_ids": sorted(snap.chunks),
            "chunks_pending": len(gen.pending),
            "counts": version.counts,
            "eval_fraction": build.eval_fraction,
            "steered_by": steer.drift_event if steer else None,
            "created_from": build.corpus_uri,
            "quarantined": chosen.quarantined,
        }
        if build.before_write:
            build.before_write()
        _write_split(storage.join(version.uri, "train", "part-00000.parquet"), version.train_rows)
        _write_split(storage.join(version.uri, "eval", "part-00000.parquet"), version.eval_rows)
        storage.write_text(storage.join(version.uri, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if latest is None or latest["dataset_hash"] != version.dataset_hash:
        if build.before_write:
            build.before_write()
        pointer = {"dataset_hash": version.dataset_hash, "dataset_uri": version.uri}
        storage.write_text(storage.join(build.root, LATEST), json.dumps(pointer, sort_keys=True) + "\n")
    return written


def _chunk_counts(snap: _Snapshot, gen: _Generated, chosen: _Items, latest: dict | None) -> dict[str, int]:
    """What the build generated and reused, and how the snapshot's chunks differ from the latest version's."""
    chunks = set(snap.chunks)
    prev_chunks = set((latest or {}).get("chunk_ids", []))
    return {
        "items_generated": sum(len(out.items) for out in gen.results.values()),
        "items_reused": chosen.reused,
        "teacher_calls": sum(out.calls for out in gen.results.values()),
        "chunks_total": len(chunks),
        "chunks_generated": len(gen.results),
        "chunks_new": len(chunks - prev_chunks) if latest is not None else len(chunks),
        "chunks_deleted": len(prev_chunks - chunks),
        "chunks_pending": len(gen.pending),
    }


def _write_split(uri: str, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=arrow_schema())
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    storage.write_bytes(uri, buf.getvalue())
