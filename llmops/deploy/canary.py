"""A verified canary: the challenger takes traffic only once it was served beside the champion and did
not do worse on a replayed set of prompts.

`llmops render` writes a canary at weight 0 and, beside its manifests, `canary-plan.json`: the configured
weight, the HTTPRoute at that weight, and the stable version's own manifests (no canary). `verify` then

1. serves both adapters (`llmops.deploy.vllm_serve`): mode `local`, one `vllm serve` of the canary's
   rendered arguments with the champion's adapter added to `--lora-modules` (multi-LoRA on one base);
   mode `kubernetes`, the stable and canary Services of the cluster, reached through the Kubernetes API
   server's service proxy (`/api/v1/namespaces/NS/services/NAME:PORT/proxy/...`), so it works from an
   Airflow worker outside the cluster;
2. checks the challenger is listed by `/v1/models` with the base as its parent;
3. replays a bounded set of prompts to both, greedily: the most recent traffic records (the settings'
   traffic location, the records `llmops drift` reads; chat records through `/v1/chat/completions`), else
   the held-out evaluation items of the dataset version (with their reference answers);
4. decides (`decide`). The challenger **regresses** when any of these holds:
   - `not_listed`: it is not in `/v1/models`, or not with the base as parent;
   - `errors`: more of its requests fail (HTTP error, "model not found", or an empty answer) than the
     champion's;
   - `accuracy` (only where references exist, i.e. evaluation items): it answers fewer items correctly
     than the champion minus `tolerance` (paired, item by item, with the evaluation's exact-match rule;
     the discordant counts and McNemar's p-value are reported, not used: 16-32 prompts detect a broken
     adapter, not a one-point regression, which is the gate's job);
   - `latency` (when `latency_factor` > 0): its median latency is above `latency_factor` times the
     champion's, and more than `LATENCY_SLACK_S` above it.
5. writes the outcome into the folder: on a pass, the HTTPRoute at the configured weight; on a failure,
   the stable-only manifests in place of the canary's (byte-identical to rendering the champion alone),
   with the reason. Either way `canary-verification.json` records the per-prompt results and the digest
   of the manifests it leaves, which `llmops deploy` requires before it applies a canary weight above 0.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import urllib.error
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import yaml

from llmops import storage
from llmops.deploy.apply import VERIFICATION_FILE, canary_weight, objects_digest
from llmops.deploy.config import CanaryConfig
from llmops.deploy.render import CANARY_PLAN, KUSTOMIZATION
from llmops.exceptions import CanaryRejected, ConfigError, InputDataError

log = logging.getLogger(__name__)

DEFAULT_PROMPTS = 16
MAX_PROMPTS = 64
DEFAULT_TOLERANCE = 1
"""Items the challenger may answer correctly fewer than the champion (a paired count)."""
DEFAULT_LATENCY_FACTOR = 3.0
LATENCY_SLACK_S = 0.05
"""Median latencies closer than this never fail the latency check: on millisecond answers a factor is noise."""
CHAMPION_SUFFIX = "-champion"
"""Local mode: the champion's adapter is served as `<name>-champion` beside the challenger's `<name>`."""


# --- what is replayed ----------------------------------------------------------------------------


@dataclass
class Prompt:
    id: str
    kind: str
    """`completion` (`/v1/completions`) or `chat` (`/v1/chat/completions`)."""
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    reference: str | None = None
    """The evaluation item's answer (None for traffic: there is no reference answer)."""


def traffic_prompts(uri: str, n: int) -> list[Prompt]:
    """The `n` most recent traffic records (records without a timestamp count as oldest)."""
    from llmops.drift.inputs import parse_time, read_records, record_files

    if not storage.exists(uri):
        return []
    records: list[dict[str, Any]] = []
    for f in record_files(uri):
        records += read_records(f)[0]
    oldest = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(enumerate(records), key=lambda ir: (parse_time(ir[1].get("timestamp")) or oldest, ir[0]),
                     reverse=True)
    out: list[Prompt] = []
    for i, rec in ordered:
        rid = str(rec.get("request_id") or f"record-{i}")
        prompt, messages = rec.get("prompt"), rec.get("messages")
        if isinstance(prompt, str) and prompt.strip():
            out.append(Prompt(rid, "completion", prompt=prompt))
        elif isinstance(messages, list):
            turns = [{"role": str(m.get("role")), "content": str(m.get("content", ""))}
                     for m in messages if isinstance(m, dict)]
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()  # the logged answer is not part of the request
            if any(t["role"] == "user" and t["content"].strip() for t in turns):
                out.append(Prompt(rid, "chat", messages=turns))
        if len(out) == n:
            break
    return out


def eval_prompts(dataset_uri: str, n: int) -> list[Prompt]:
    """One phrasing of the first `n` held-out evaluation items (sorted by item id: the same set each run)."""
    from llmops.evaluation.data import read_eval_rows

    rows, _ = read_eval_rows(dataset_uri)
    out: list[Prompt] = []
    seen: set[str] = set()
    for row in rows:
        item = str(row["item_id"])
        if item in seen:
            continue
        seen.add(item)
        out.append(Prompt(f"{item}#{int(row.get('phrasing') or 0)}", "completion", prompt=row["prompt"],
                          reference=str(row["answer"])))
        if len(out) == n:
            break
    return out


def replay_prompts(n: int, traffic_uri: str | None, dataset_uri: str | None) -> tuple[list[Prompt], str]:
    """(prompts, where they came from): recent traffic when there is any, else the evaluation items."""
    if not 1 <= n <= MAX_PROMPTS:
        raise ConfigError(f"--prompts {n}: replay between 1 and {MAX_PROMPTS} prompts")
    if traffic_uri:
        prompts = traffic_prompts(traffic_uri, n)
        if prompts:
            return prompts, f"traffic {traffic_uri}"
    if dataset_uri:
        return eval_prompts(dataset_uri, n), f"evaluation items of {dataset_uri}"
    raise InputDataError(
        f"nothing to replay to the canary: no traffic records at {traffic_uri or '(no traffic location)'} and no "
        "dataset version (give --dataset, or build one with `llmops dataset build`)"
    )


# --- where the two adapters answer ---------------------------------------------------------------


class Endpoint(Protocol):
    """An OpenAI-compatible server: one HTTP exchange, (status, body)."""

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]: ...


class HttpEndpoint:
    """A server reached directly (the local vLLM)."""

    def __init__(self, url: str, timeout_s: float = 120.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        from llmops.deploy.vllm_serve import _http

        try:
            return _http(method, self.url + path, body, timeout=self.timeout_s)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            return 0, f"connection failed: {exc}".encode()


class ServiceProxy(Protocol):
    """The Kubernetes API server's proxy to a Service (the boundary the tests replace)."""

    def request(self, method: str, namespace: str, service: str, port: int, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]: ...


class KubeServiceProxy:
    """`ServiceProxy` over the `kubernetes` client: `{METHOD} /api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`
    (what `CoreV1Api.connect_get_namespaced_service_proxy_with_path` calls; the generated `connect_post_*`
    methods take no body, so the POSTs go through `ApiClient.call_api` with the same path and auth)."""

    def __init__(self, api_client: Any, timeout_s: float = 120.0) -> None:
        self.api_client = api_client
        self.timeout_s = timeout_s

    def request(self, method: str, namespace: str, service: str, port: int, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        from kubernetes.client.exceptions import ApiException

        # Names are DNS labels; the path is built here because a `{path}` parameter would have its '/' escaped.
        resource = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
        try:
            resp = self.api_client.call_api(
                resource, method, header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body=body, auth_settings=["BearerToken"], _preload_content=False, _request_timeout=self.timeout_s,
            )
        except ApiException as exc:
            body = exc.body if exc.body is not None else str(exc.reason)
            return int(exc.status or 0), body.encode() if isinstance(body, str) else bytes(body)
        response = resp[0] if isinstance(resp, tuple) else resp
        return int(response.status), bytes(response.data)


class ProxiedService:
    """One Service of the cluster as an `Endpoint`, through a `ServiceProxy`."""

    def __init__(self, proxy: ServiceProxy, namespace: str, service: str, port: int) -> None:
        self.proxy, self.namespace, self.service, self.port = proxy, namespace, service, port

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        try:
            return self.proxy.request(method, self.namespace, self.service, self.port, path, body)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            return 0, f"connection failed: {exc}".encode()


# --- asking ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    id: str
    model: str
    status: int
    text: str
    latency_s: float
    error: str | None = None
    correct: bool | None = None

    @property
    def failed(self) -> bool:
        return self.status != 200 or not self.text.strip()


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def ask(endpoint: Endpoint, model: str, prompt: Prompt, max_tokens: int) -> Answer:
    """One greedy request under `model`; the answer scored against the reference when there is one."""
    from llmops.evaluation.data import normalize_answer

    if prompt.kind == "chat":
        path, body = "/v1/chat/completions", {"model": model, "messages": prompt.messages}
    else:
        path, body = "/v1/completions", {"model": model, "prompt": prompt.prompt}
    body.update(max_tokens=max_tokens, temperature=0)
    t0 = time.perf_counter()
    status, raw = endpoint.request("POST", path, body)
    elapsed = time.perf_counter() - t0
    data = _json(raw)
    text, error = "", None
    if status == 200 and isinstance(data, dict) and data.get("choices"):
        choice = data["choices"][0]
        text = str(choice.get("text") if prompt.kind != "chat" else (choice.get("message") or {}).get("content") or "")
        if not text.strip():
            error = "empty answer"
    else:
        detail = data.get("error", data) if isinstance(data, dict) else raw[:300].decode(errors="replace")
        error = f"HTTP {status}: {json.dumps(detail)[:300] if not isinstance(detail, str) else detail[:300]}"
    correct = None
    if prompt.reference is not None:
        correct = status == 200 and normalize_answer(text) == normalize_answer(prompt.reference)
    return Answer(prompt.id, model, status, text, round(elapsed, 4), error, correct)


def listing_problem(endpoint: Endpoint, name: str, base: str) -> str | None:
    """Why `/v1/models` does not list `name` as an adapter of `base` (None when it does)."""
    status, raw = endpoint.request("GET", "/v1/models")
    data = _json(raw)
    if status != 200 or not isinstance(data, dict):
        return f"/v1/models answered HTTP {status}: {raw[:200].decode(errors='replace')}"
    listed = {m.get("id"): m.get("parent") for m in data.get("data") or [] if isinstance(m, dict)}
    if name not in listed:
        return f"{name!r} is not listed by /v1/models ({sorted(map(str, listed))}): clients would get 'model not found'"
    if listed[name] != base:
        return f"/v1/models lists {name!r} with parent {listed[name]!r}, not the base {base!r}"
    return None


# --- deciding --------------------------------------------------------------------------------------


@dataclass
class Decision:
    passed: bool
    reasons: list[dict[str, str]]
    """`{"check": not_listed | errors | accuracy | latency, "detail": ...}` for each failed check."""
    stats: dict[str, Any]

    @property
    def reason(self) -> str:
        return "; ".join(f"{r['check']}: {r['detail']}" for r in self.reasons) or "passed"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def decide(
    champion: list[Answer],
    challenger: list[Answer],
    listing: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
    latency_factor: float = DEFAULT_LATENCY_FACTOR,
) -> Decision:
    """The verdict on paired answers (same prompts, same order); see the module docstring."""
    if [a.id for a in champion] != [a.id for a in challenger]:
        raise ValueError("champion and challenger answers must be paired prompt by prompt")
    reasons: list[dict[str, str]] = []
    if listing:
        reasons.append({"check": "not_listed", "detail": listing})
    champ_err = sum(a.failed for a in champion)
    chal_err = sum(a.failed for a in challenger)
    stats: dict[str, Any] = {"prompts": len(challenger), "champion_errors": champ_err, "challenger_errors": chal_err}
    if chal_err > champ_err:
        first = next(a for a in challenger if a.failed)
        reasons.append({"check": "errors", "detail": f"{chal_err} of {len(challenger)} challenger requests failed "
                        f"or answered nothing (champion: {champ_err}); first: {first.id}: {first.error}"})
    scored = [(c, h) for c, h in zip(champion, challenger, strict=True) if h.correct is not None]
    if scored:
        import numpy as np

        from llmops.evaluation.stats import discordant_counts, mcnemar

        champ = np.array([float(bool(c.correct)) for c, _ in scored])
        chal = np.array([float(bool(h.correct)) for _, h in scored])
        b, c = discordant_counts(chal, champ)
        test = mcnemar(b, c)
        stats.update(scored=len(scored), champion_correct=int(champ.sum()), challenger_correct=int(chal.sum()),
                     only_challenger_correct=b, only_champion_correct=c, mcnemar_p=round(test.p_value, 4),
                     tolerance=tolerance)
        if chal.sum() < champ.sum() - tolerance:
            reasons.append({"check": "accuracy", "detail": f"the challenger answered {int(chal.sum())} of "
                            f"{len(scored)} correctly, the champion {int(champ.sum())} (tolerance {tolerance}; "
                            f"{c} only the champion got right, {b} only the challenger)"})
    champ_lat = _median([a.latency_s for a in champion if not a.failed])
    chal_lat = _median([a.latency_s for a in challenger if not a.failed])
    stats.update(champion_median_latency_s=champ_lat, challenger_median_latency_s=chal_lat,
                 latency_factor=latency_factor)
    if (latency_factor > 0 and champ_lat and chal_lat and chal_lat > latency_factor * champ_lat
            and chal_lat - champ_lat > LATENCY_SLACK_S):
        reasons.append({"check": "latency", "detail": f"median latency {chal_lat:.3f} s is above {latency_factor:g} x "
                        f"the champion's {champ_lat:.3f} s"})
    return Decision(not reasons, reasons, stats)


def replay(champion: tuple[Endpoint, str], challenger: tuple[Endpoint, str], prompts: list[Prompt],
           max_tokens: int) -> tuple[list[Answer], list[Answer]]:
    """Each prompt to both, interleaved (champion first), so a load spike hits both alike."""
    champ, chal = [], []
    for p in prompts:
        champ.append(ask(champion[0], champion[1], p, max_tokens))
        chal.append(ask(challenger[0], challenger[1], p, max_tokens))
    return champ, chal


# --- the folder ------------------------------------------------------------------------------------


@dataclass
class Canary:
    """A version folder with a canary, as `llmops render` wrote it."""

    folder: str
    files: dict[str, str]
    """YAML file name -> text (the kustomization included)."""
    plan: dict[str, Any] | None
    record: dict[str, Any] | None

    @property
    def objects(self) -> list[dict[str, Any]]:
        return _objects(self.files)

    @property
    def has_canary(self) -> bool:
        return any("-canary" in n for n in self.files)


def _objects(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for n in sorted(files) if n != KUSTOMIZATION for d in yaml.safe_load_all(files[n]) if d]


def read_canary(folder: str) -> Canary:
    storage.check_uri(folder, "--manifests")
    if not storage.exists(folder):
        raise ConfigError(f"--manifests {folder}: no such folder (run `llmops render` first)")
    files: dict[str, str] = {}
    plan = record = None
    for info in storage.list_files(folder, recursive=False):
        name = info.uri.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith((".yaml", ".yml")):
            files[name] = storage.read_text(info.uri)
        elif name == CANARY_PLAN:
            plan = json.loads(storage.read_text(info.uri))
        elif name == VERIFICATION_FILE:
            record = json.loads(storage.read_text(info.uri))
    if not files:
        raise ConfigError(f"--manifests {folder}: no rendered manifests there (run `llmops render` first)")
    return Canary(folder, dict(sorted(files.items())), plan, record)


def write_outcome(canary: Canary, decision: Decision, summary: dict[str, Any]) -> dict[str, Any]:
    """Pass: the HTTPRoute at the planned weight. Fail: the stable-only manifests. Then the record."""
    plan = canary.plan or {}
    if decision.passed:
        new = {**canary.files, **plan["verified"]}
    else:
        new = dict(plan["rollback"])
    for name, text in new.items():
        if canary.files.get(name) != text:
            storage.write_text(storage.join(canary.folder, name), text)
    for name in sorted(set(canary.files) - set(new)):
        storage.delete(storage.join(canary.folder, name))
    objects = _objects(new)
    record = {
        **summary,
        "passed": decision.passed,
        "reason": decision.reason,
        "reasons": decision.reasons,
        "weight": canary_weight(objects),
        "digest": objects_digest(objects),
        "files": sorted(new),
    }
    storage.write_text(storage.join(canary.folder, VERIFICATION_FILE), json.dumps(record, indent=2, sort_keys=True)
                       + "\n")
    return record


# --- the two ways to reach both adapters ------------------------------------------------------------


def _served_name(args: list[str]) -> str:
    """The adapter's name in `--lora-modules NAME=PATH`: what clients send as `model`."""
    i = args.index("--lora-modules") if "--lora-modules" in args else -1
    if i < 0 or i + 1 >= len(args) or "=" not in args[i + 1]:
        raise ConfigError("the canary's vLLM arguments have no --lora-modules NAME=PATH: a canary check needs adapters")
    return args[i + 1].split("=", 1)[0]


def _track_path_map(server: Any, tmp: Any, fetched: dict[str, str]) -> dict[str, str]:
    """Pod paths of one track's `vllm serve` -> the local folders (downloaded from s3://) they are copies of,
    from the annotations render put on the object. `fetched`: location -> local folder, shared by both
    tracks so one base is one local folder."""
    from pathlib import Path

    from llmops.deploy.smoke import _local

    base = server.annotations.get("llmops.dev/base-model")
    adapter = server.annotations.get("llmops.dev/adapter")
    if not base or not adapter:
        raise ConfigError(f"{server.file}: no llmops.dev/base-model and llmops.dev/adapter annotations (a canary "
                          "check serves adapters; re-render with `llmops render`)")
    i = server.args.index("--lora-modules")
    pod_adapter = server.args[i + 1].split("=", 1)[1]
    role = "champion" if "-canary" not in server.file else "challenger"
    if base not in fetched:
        fetched[base] = _local(base, Path(tmp), f"{role}-base")
    if adapter not in fetched:
        fetched[adapter] = _local(adapter, Path(tmp), f"{role}-adapter")
    return {server.args[0]: fetched[base], pod_adapter: fetched[adapter]}


def verify_local(canary: Canary, prompts: list[Prompt], max_tokens: int, tolerance: int, latency_factor: float,
                 startup_timeout_s: float | None = None) -> tuple[Decision, dict[str, Any]]:
    """Both adapters in one local `vllm serve` (the canary's rendered arguments + the champion's adapter)."""
    import tempfile
    from pathlib import Path

    from llmops.deploy import vllm_serve as vs

    python = vs.require_serving()
    challenger = vs.rendered_server(canary.files, canary=True)
    champion = vs.rendered_server(canary.files, canary=False)
    name = _served_name(challenger.args)
    with tempfile.TemporaryDirectory(prefix="llmops-canary-") as tmp:
        fetched: dict[str, str] = {}
        chal_local = vs.local_server(challenger, _track_path_map(challenger, tmp, fetched))
        champ_local = vs.local_server(champion, _track_path_map(champion, tmp, fetched), port=chal_local.port)
        local = vs.side_by_side(chal_local, champ_local, name + CHAMPION_SUFFIX)
        log_path = Path(tmp) / "vllm.log"
        info: dict[str, Any] = {"mode": "local", "served_name": name, "champion_name": name + CHAMPION_SUFFIX,
                                "base_name": local.base_name, "translated": local.translated}
        with vs.VllmServer(python, local, log_path) as server:
            info["command"] = server.cmd
            try:
                info["startup_s"] = round(server.wait_ready(startup_timeout_s or vs.STARTUP_TIMEOUT_S), 2)
            except vs.ServingError as exc:
                detail = vs._errors(vs._tail(log_path, 60000))
                reason = f"vLLM did not start with the champion's and the challenger's adapters: {exc}\n{detail}"
                return Decision(False, [{"check": "not_listed", "detail": reason}], {}), info
            endpoint = HttpEndpoint(server.url)
            listing = listing_problem(endpoint, name, local.base_name)
            champ, chal = replay((endpoint, name + CHAMPION_SUFFIX), (endpoint, name), prompts, max_tokens)
            info["vllm_log_tail"] = vs._errors(vs._tail(log_path, 20000), 10) if listing else None
    decision = decide(champ, chal, listing, tolerance, latency_factor)
    info["answers"] = _paired(champ, chal)
    return decision, info


def _backends(canary: Canary) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stable backend, canary backend) of the HTTPRoute: Service name and port."""
    objs = canary.objects
    tracks = {}
    for o in objs:
        track = ((o.get("metadata") or {}).get("labels") or {}).get("llmops.dev/track")
        if track:
            tracks[o["metadata"]["name"]] = track
            tracks[o["metadata"]["name"] + "-predictor"] = track
    route = next((o for o in objs if o.get("kind") == "HTTPRoute"), None)
    if route is None:
        raise ConfigError(f"{canary.folder}: a canary without an HTTPRoute (set route.gateway and re-render)")
    refs = [r for rule in route["spec"].get("rules") or [] for r in rule.get("backendRefs") or []]
    by_track = {tracks.get(r["name"]): r for r in refs}
    if "stable" not in by_track or "canary" not in by_track:
        raise ConfigError(f"{canary.folder}: the HTTPRoute does not name a stable and a canary backend")
    return by_track["stable"], by_track["canary"]


def verify_kubernetes(canary: Canary, proxy: ServiceProxy, prompts: list[Prompt], max_tokens: int, tolerance: int,
                      latency_factor: float, ready_timeout_s: float = 300.0, poll_s: float = 5.0
                      ) -> tuple[Decision, dict[str, Any]]:
    """The stable and canary Services of the cluster, through the API server's service proxy."""
    from llmops.deploy.vllm_serve import _option, rendered_server

    challenger = rendered_server(canary.files, canary=True)
    name = _served_name(challenger.args)
    names = _option(challenger.args, "--served-model-name")
    base = names.split()[0] if names else challenger.args[0]
    namespace = next(o["metadata"]["namespace"] for o in canary.objects if o.get("kind") == "HTTPRoute")
    stable_ref, canary_ref = _backends(canary)
    stable = ProxiedService(proxy, namespace, stable_ref["name"], int(stable_ref["port"]))
    chal = ProxiedService(proxy, namespace, canary_ref["name"], int(canary_ref["port"]))
    info: dict[str, Any] = {"mode": "kubernetes", "namespace": namespace, "served_name": name, "base_name": base,
                            "stable_service": f"{stable.service}:{stable.port}",
                            "canary_service": f"{chal.service}:{chal.port}"}
    deadline = time.monotonic() + ready_timeout_s
    status, raw = chal.request("GET", "/health")
    while status != 200 and time.monotonic() < deadline:
        time.sleep(poll_s)
        status, raw = chal.request("GET", "/health")
    if status != 200:
        reason = (f"the canary Service {chal.service}:{chal.port} did not answer /health through the API server "
                  f"proxy within {ready_timeout_s:g} s: HTTP {status} {raw[:200].decode(errors='replace')}")
        return Decision(False, [{"check": "not_listed", "detail": reason}], {}), info
    listing = listing_problem(chal, name, base)
    champ, chal_answers = replay((stable, name), (chal, name), prompts, max_tokens)
    decision = decide(champ, chal_answers, listing, tolerance, latency_factor)
    info["answers"] = _paired(champ, chal_answers)
    return decision, info


def _paired(champion: list[Answer], challenger: list[Answer]) -> list[dict[str, Any]]:
    return [{"id": c.id, "champion": asdict(c), "challenger": asdict(h)} for c, h in zip(champion, challenger,
                                                                                          strict=True)]


# --- canary or promote (the lifecycle DAG's branch) -------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """How a version that passed the gate goes out: as a canary beside the champion (the `champion` alias
    stays where it is; promoting is a later decision), or promoted and served alone."""

    canary: bool
    model_uri: str
    """The version rendered: `models:/NAME/VERSION`."""
    stable: str | None
    """The stable version beside the canary (None without a canary)."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def choose_rollout(canary: CanaryConfig, name: str, version: str, champion_version: str | None) -> Rollout:
    """Decide from the deploy config's `canary` section and the current champion. A canary needs a stable
    version: without `canary.stable_model_uri` and without a champion (the first version), the version is
    promoted and served alone, as Flagger initializes a primary without analysis."""
    uri = f"models:/{name}/{version}"
    if not canary.enabled:
        return Rollout(False, uri, None, "canary.enabled is false: promote, then render and deploy the champion")
    if canary.stable_model_uri:
        return Rollout(True, uri, canary.stable_model_uri,
                       f"canary beside canary.stable_model_uri {canary.stable_model_uri}; champion not moved")
    if champion_version is None:
        return Rollout(False, uri, None, "canary.enabled, but no champion yet to serve beside: this first "
                       "version is promoted and served alone")
    if str(champion_version) == str(version):
        return Rollout(False, uri, None, f"version {version} is already the champion: served alone")
    return Rollout(True, uri, f"models:/{name}@champion",
                   f"canary beside the champion (version {champion_version}); champion not moved until promoted")


def rollout_for(config_uri: str | None, name: str, version: str, settings: Any = None) -> Rollout:
    """`choose_rollout` for a deploy config file (local or s3://) and the registry's current champion."""
    from llmops.deploy.config import load_config
    from llmops.registry import current_champion
    from llmops.settings import load_settings

    settings = settings or load_settings()
    config = load_config(config_uri, settings)
    champion = None
    if config.canary.enabled and not config.canary.stable_model_uri:
        found = current_champion(name, settings=settings, download=False)
        champion = found.version if found else None
    return choose_rollout(config.canary, name, str(version), champion)


# --- the step --------------------------------------------------------------------------------------


def cleanup_cluster(api: Any, canary: Canary) -> list[str]:
    """Mode kubernetes, after a failed check: the stable-only objects applied, the canary's deleted."""
    from llmops.deploy.apply import apply_all, prune

    stable_only = _objects((canary.plan or {})["rollback"])
    apply_all(api, stable_only)
    return prune(api, keep=stable_only, candidates=canary.objects)


def verify(
    folder: str,
    *,
    mode: str,
    prompts: Callable[[], tuple[list[Prompt], str]],
    max_tokens: int = 16,
    tolerance: int = DEFAULT_TOLERANCE,
    latency_factor: float = DEFAULT_LATENCY_FACTOR,
    proxy: ServiceProxy | None = None,
    api: Any = None,
    startup_timeout_s: float | None = None,
    ready_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Check the canary of a rendered folder and move its weight or roll it back (module docstring).
    `prompts` gives (the prompts to replay, where they came from), called only when there is a canary to
    check. Returns the summary on a pass (or when there is nothing to verify); raises `CanaryRejected`
    after a rollback, with the summary as its `summary` attribute."""
    canary = read_canary(folder)
    base_summary = {"manifests_uri": folder, "mode": mode}
    if canary.plan is None or not canary.has_canary:
        if canary.record and not canary.record.get("passed"):
            raise _rejected(folder, canary.record)
        if canary.has_canary:
            raise ConfigError(f"{folder}: canary manifests without {CANARY_PLAN}: re-render with `llmops render`")
        return {**base_summary, "canary": False, "moved": False, "reason": "no canary in the folder: nothing to verify"}
    if canary.record and canary.record.get("passed") and canary.record.get("digest") == objects_digest(canary.objects):
        return {**canary.record, "already_verified": True}
    if mode not in ("local", "kubernetes"):
        raise ConfigError(f"--mode {mode!r}: use local or kubernetes")
    if mode == "kubernetes" and proxy is None:
        raise ConfigError("mode kubernetes: the canary check needs the Kubernetes API (a service proxy)")
    replayed, source = prompts()
    if not replayed:
        raise InputDataError(f"no prompts to replay to the canary ({source})")
    started = time.perf_counter()
    if mode == "kubernetes":
        decision, info = verify_kubernetes(canary, proxy, replayed, max_tokens, tolerance, latency_factor,
                                           ready_timeout_s, poll_s=min(5.0, ready_timeout_s / 2))
    else:
        decision, info = verify_local(canary, replayed, max_tokens, tolerance, latency_factor, startup_timeout_s)
    plan = canary.plan
    summary = {
        **base_summary,
        "canary": True,
        "challenger": plan.get("challenger"),
        "champion": plan.get("champion"),
        "planned_weight": plan.get("weight"),
        "prompt_source": source,
        "prompts": len(replayed),
        "check": info,
        "stats": decision.stats,
        "check_s": round(time.perf_counter() - started, 2),
    }
    record = write_outcome(canary, decision, summary)
    if decision.passed:
        log.info("canary verified: %s moved to weight %s (%s)", folder, record["weight"], source)
        return {**record, "moved": True}
    deleted = cleanup_cluster(api, canary) if (mode == "kubernetes" and api is not None) else []
    record = {**record, "moved": False, "cluster_deleted": deleted}
    log.error("canary REJECTED, rolled back to the stable-only manifests in %s: %s", folder, decision.reason)
    raise _rejected(folder, record)


def _rejected(folder: str, record: dict[str, Any]) -> CanaryRejected:
    exc = CanaryRejected(f"canary rejected, weight not moved, {folder} rolled back to the stable-only manifests: "
                         f"{record.get('reason')} (details: {storage.join(folder, VERIFICATION_FILE)})")
    exc.summary = {**record, "moved": False}  # type: ignore[attr-defined]
    return exc
