"""Serve a rendered version with the real vLLM, locally on CPU, and check it the way a client would.

The arguments come from the rendered manifests (the `vllm` container of the Deployment, the canary's when
the folder has one; with KServe, the InferenceService's arguments and the ServingRuntime's command), never
from a second copy, so what is checked here is what the cluster will run. Only
what must differ on a CPU-only machine is changed, and the summary lists every change (`translated`):

- `--host 0.0.0.0` becomes `127.0.0.1`, `--port` a free local port;
- weight paths under the pod's model mount (`/models/...`) become the local folders they mirror;
- `--tensor-parallel-size N` becomes 1 and `--gpu-memory-utilization` is dropped (GPU-only manifests);
- `--enforce-eager` is added (no torch.compile on a machine that starts the server once per check; with
  LoRA the CPU build does not compile anyway), and the KV cache is kept small with `VLLM_CPU_KVCACHE_SPACE`
  (GiB; vLLM's CPU backend otherwise reserves 4).

**How the server is started.** The serving environment is a virtualenv of its own (`make vllm`:
`.venv-vllm`, the CPU build `vllm-cpu` of the pinned version, `llmops/deploy/vllm_pin.py`). The pod's
command is `vllm serve`; here it is `<venv>/bin/python -P llmops/deploy/vllm_entry.py serve ARGS`, which
runs the very function of vLLM's `vllm` console script, only answering its lookup of the distribution
metadata `vllm` with `vllm-cpu` (see `vllm_entry` for why, and why not the deprecated
`python -m vllm.entrypoints.openai.api_server`). An argument the pinned vLLM rejects fails the check with
the argument named (`ServingError`).

The server runs in its own process group under `llmops.process.StepProcess`: it is stopped (SIGTERM,
then SIGKILL) on every exit path, and a watchdog stops it when this process dies however it dies.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmops.exceptions import ConfigError, DeploymentError, ModelLoadError

log = logging.getLogger(__name__)

VENV_ENV = "LLMOPS_VLLM_VENV"
"""Environment variable naming the serving virtualenv (default: `.venv-vllm` of the checkout)."""
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
STAMP = ".installed"
KV_CACHE_GIB = "1"
STARTUP_TIMEOUT_S = 300.0
STOP_GRACE_S = 20.0
CONTAINER = "vllm"
ENTRY = Path(__file__).with_name("vllm_entry.py")


class ServingError(DeploymentError):
    """vLLM did not start, rejected an argument, or did not answer as the manifests say it should."""


# --- the serving environment ------------------------------------------------------------------------


def venv_dir() -> Path:
    from llmops.settings import process_settings

    return Path(process_settings().vllm_venv or DEFAULT_VENV)


def serving_python() -> Path | None:
    """The serving environment's python when `make vllm` completed there (its stamp file exists)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    return python if (venv / STAMP).exists() and python.exists() else None


def cpu_unsupported() -> str | None:
    """Why vLLM's CPU build cannot run on this machine, or None (x86 needs AVX-512)."""
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        return f"vLLM's CPU build is installed for x86_64 here; this machine is {platform.machine()}"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cannot read /proc/cpuinfo to check for AVX-512 (vLLM's x86 CPU build needs it)"
    if not re.search(r"^flags\s*:.*\bavx512f\b", flags, re.M):
        return "this CPU has no AVX-512 (flag avx512f), which vLLM's x86 CPU build needs"
    return None


def require_serving() -> Path:
    """The serving environment's python, or an error saying how to get one / why this CPU cannot."""
    python = serving_python()
    if python is None:
        raise ModelLoadError(f"no serving environment at {venv_dir()}: create it with `make vllm` "
                             f"(or point {VENV_ENV} at one)")
    reason = cpu_unsupported()
    if reason:
        raise ServingError(reason)
    return python


def installed_version(python: Path) -> str:
    """`vllm.__version__` inside the serving environment."""
    import subprocess

    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('vllm-cpu'))"],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        raise ServingError(f"the serving environment {python.parent.parent} has no vllm-cpu: {out.stderr[-300:]}")
    return out.stdout.strip()


# --- the rendered container --------------------------------------------------------------------------


@dataclass
class RenderedServer:
    """The `vllm` container of one rendered manifest: what the pod runs."""

    file: str
    kind: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    mount_path: str | None
    annotations: dict[str, str] = field(default_factory=dict)
    """The object's annotations: `llmops.dev/base-model` and `llmops.dev/adapter` say where the weights
    the pod reads come from."""


def _container(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Deployment":
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    elif doc.get("kind") == "ServingRuntime":
        containers = spec.get("containers") or []
    else:
        return None
    return next((c for c in containers if c.get("name") in (CONTAINER, "kserve-container")), None)


def rendered_server(files: dict[str, str], canary: bool | None = None) -> RenderedServer:
    """The vLLM container of a rendered version (`files`: file name -> YAML text, as `llmops render`
    writes them). With a canary, the canary track is the version the folder was rendered for."""
    names = sorted(files)
    if canary is None:
        canary = any("-canary" in n for n in names)
    if any(n.startswith("inferenceservice") for n in names):
        return _kserve_server(files, "inferenceservice-canary.yaml" if canary else "inferenceservice.yaml")
    order = [n for n in names if n.startswith("deployment-canary")] if canary else []
    order += [n for n in names if n == "deployment.yaml"]
    for name in order:
        for doc in yaml.safe_load_all(files[name]):
            container = _container(doc or {})
            if container is None:
                continue
            env = {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
            mounts = container.get("volumeMounts") or []
            mount = next((m["mountPath"] for m in mounts if m.get("name") in ("model-cache", "models")), None)
            return RenderedServer(name, doc["kind"], list(container.get("command") or []),
                                  [str(a) for a in container.get("args") or []], env, mount,
                                  dict((doc.get("metadata") or {}).get("annotations") or {}))
    raise ConfigError(
        f"no vLLM container in the rendered files ({', '.join(names) or 'none'}): expected deployment.yaml "
        "or servingruntime.yaml as written by `llmops render`"
    )


def _kserve_server(files: dict[str, str], isvc_file: str) -> RenderedServer:
    """KServe: the command is the ServingRuntime's container's, the arguments the InferenceService's."""
    runtime = next((d for n in sorted(files) if n.startswith("servingruntime")
                    for d in yaml.safe_load_all(files[n]) if d and d.get("kind") == "ServingRuntime"), None)
    isvc = next((d for d in yaml.safe_load_all(files.get(isvc_file, "")) if d), None)
    container = _container(runtime) if runtime else None
    if container is None or isvc is None:
        raise ConfigError(f"KServe manifests without a ServingRuntime container or {isvc_file}")
    model = ((isvc.get("spec") or {}).get("predictor") or {}).get("model") or {}
    env = {e["name"]: str(e["value"]) for e in model.get("env") or [] if "value" in e}
    mounts = model.get("volumeMounts") or container.get("volumeMounts") or []
    mount = next((m["mountPath"] for m in mounts if m.get("name") in ("model-cache", "models")), None)
    return RenderedServer(isvc_file, "InferenceService", list(container.get("command") or []),
                          [str(a) for a in model.get("args") or []], env, mount,
                          dict((isvc.get("metadata") or {}).get("annotations") or {}))


def read_folder(folder: str) -> dict[str, str]:
    from llmops import storage

    files = {}
    for f in storage.list_files(folder):
        name = f.uri.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".yaml") and name != "kustomization.yaml":
            files[name] = storage.read_text(f.uri)
    if not files:
        raise ConfigError(f"--manifests {folder}: no rendered manifests there (run `llmops render` first)")
    return files


# --- translation to this machine ---------------------------------------------------------------------


@dataclass
class LocalServer:
    """The rendered arguments as run here, with what changed and the names a client uses."""

    args: list[str]
    env: dict[str, str]
    port: int
    translated: list[str]
    base_name: str
    lora_modules: dict[str, str] = field(default_factory=dict)


def _option(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_server(server: RenderedServer, path_map: dict[str, str], port: int | None = None) -> LocalServer:
    """Translate a rendered container to this machine (see the module docstring for the full list).

    `path_map`: pod path prefix -> local folder (e.g. `/models` -> the data root it mirrors). A weight path
    under none of them is an error naming it: the server would fail later with a less clear message."""
    if server.command[-2:] != ["vllm", "serve"]:
        raise ConfigError(f"{server.file}: the vllm container runs {server.command}, not `vllm serve`")
    port = port or free_port()
    changed: list[str] = []

    def local_path(path: str, what: str) -> str:
        for prefix, local in sorted(path_map.items(), key=lambda kv: -len(kv[0])):
            p = prefix.rstrip("/")
            if path == p or path.startswith(p + "/"):
                out = str(Path(local) / path[len(p):].lstrip("/")) if path != p else str(local)
                changed.append(f"{what} {path} -> {out}")
                return out
        if path.startswith("/") and not Path(path).exists():
            raise ConfigError(
                f"{server.file}: {what} {path} is not under a mapped mount ({', '.join(path_map) or 'none'}) "
                "and does not exist here"
            )
        return path

    src = list(server.args)
    out: list[str] = []
    lora_modules: dict[str, str] = {}
    i = 0
    if src and not src[0].startswith("-"):
        out.append(local_path(src[0], "model"))
        i = 1
    while i < len(src):
        a = src[i]
        nxt = src[i + 1] if i + 1 < len(src) else None
        if a == "--host":
            out += [a, "127.0.0.1"]
            changed.append(f"--host {nxt} -> 127.0.0.1")
            i += 2
        elif a == "--port":
            out += [a, str(port)]
            changed.append(f"--port {nxt} -> {port}")
            i += 2
        elif a == "--tensor-parallel-size" and nxt not in (None, "1"):
            out += [a, "1"]
            changed.append(f"--tensor-parallel-size {nxt} -> 1 (one CPU process)")
            i += 2
        elif a == "--gpu-memory-utilization":
            changed.append(f"--gpu-memory-utilization {nxt} dropped (no GPU)")
            i += 2
        elif a == "--lora-modules":
            out.append(a)
            i += 1
            while i < len(src) and not src[i].startswith("--"):
                name, _, path = src[i].partition("=")
                if not path:
                    raise ConfigError(f"{server.file}: --lora-modules {src[i]!r} is not NAME=PATH")
                local = local_path(path, f"adapter {name}")
                lora_modules[name] = local
                out.append(f"{name}={local}")
                i += 1
        else:
            out.append(a)
            i += 1
    if "--enforce-eager" not in out:
        out.append("--enforce-eager")
        changed.append("--enforce-eager added (no compilation on CPU)")
    env = dict(server.env)
    env.pop("HOME", None)
    env.pop("XDG_CACHE_HOME", None)
    env.pop("HF_HOME", None)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    changed.append(f"VLLM_CPU_KVCACHE_SPACE={env['VLLM_CPU_KVCACHE_SPACE']} (GiB of KV cache)")
    names = _option(server.args, "--served-model-name")
    base_name = names.split()[0] if names else out[0]
    return LocalServer(out, env, port, changed, base_name, lora_modules)


def side_by_side(challenger: LocalServer, champion: LocalServer, champion_name: str) -> LocalServer:
    """One server for a canary check: the challenger's translated arguments (its adapter under the name
    the canary's manifests give it, what clients will ask for) with the champion's adapter added to
    `--lora-modules` as `champion_name` (one server cannot serve two adapters under one name; in the
    cluster each track serves its own under the shared name). Both must be adapters on the same base."""
    if not challenger.lora_modules or not champion.lora_modules:
        raise ConfigError("a side-by-side canary check needs LoRA adapters on both tracks (multi-LoRA on one "
                          "base); a merged model has no adapter to serve beside another")
    if challenger.args[0] != champion.args[0]:
        raise ConfigError(f"the champion's base ({champion.args[0]}) is not the challenger's "
                          f"({challenger.args[0]}): multi-LoRA serves adapters of one base only")
    if champion_name in challenger.lora_modules or champion_name == challenger.base_name:
        raise ConfigError(f"the champion's name {champion_name!r} is already served by the challenger's server")
    path = next(iter(champion.lora_modules.values()))
    args = list(challenger.args)
    i = args.index("--lora-modules") + 1
    while i < len(args) and not args[i].startswith("--"):
        i += 1
    args.insert(i, f"{champion_name}={path}")
    loras = _option(args, "--max-loras")
    changed = [*challenger.translated, f"--lora-modules {champion_name}={path} added (the champion, side by side)"]
    if loras is not None and int(loras) < 2:
        # Both adapters in one batch: the replay sends them interleaved.
        args[args.index("--max-loras") + 1] = "2"
        changed.append(f"--max-loras {loras} -> 2 (two adapters side by side)")
    modules = {**challenger.lora_modules, champion_name: path}
    return LocalServer(args, dict(challenger.env), challenger.port, changed, challenger.base_name, modules)


# --- running and checking ------------------------------------------------------------------------------


REJECTED = [
    re.compile(r"unrecognized arguments: (.+)"),
    re.compile(r"argument (--[\w-]+): (.+)"),
    re.compile(r"error: (ambiguous option: .+)"),
]


def rejected_argument(log_text: str) -> str | None:
    """The argument the vLLM argument parser rejected, from its output (None when it is not that)."""
    for line in log_text.splitlines()[::-1]:
        for pattern in REJECTED:
            m = pattern.search(line)
            if m:
                return " ".join(g for g in m.groups() if g)
    return None


def _http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 120.0) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _errors(text: str, lines: int = 25) -> str:
    """The server's last error lines (a traceback's end), else its last lines."""
    rows = text.splitlines()
    hits = [i for i, r in enumerate(rows) if "Error" in r or "Traceback" in r]
    start = max(hits[-1] - lines + 3, 0) if hits else max(len(rows) - lines, 0)
    return "\n".join(rows[start:start + lines])


class VllmServer:
    """A running local vLLM server (a context manager: stopped on exit, whatever happened)."""

    def __init__(self, python: Path, local: LocalServer, log_path: Path):
        self.python = python
        self.local = local
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{local.port}"
        self.step: Any = None
        self.startup_s: float | None = None

    @property
    def cmd(self) -> list[str]:
        return [str(self.python), "-P", str(ENTRY), "serve", *self.local.args]

    def __enter__(self) -> VllmServer:
        from llmops.process import StepProcess

        env = {**os.environ, **self.local.env, "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        # The trainer's environment must not leak into the serving one.
        for key in ("PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(key, None)
        log.info("starting vLLM: %s", shlex.join(self.cmd))
        self.step = StepProcess(self.cmd, env=env, grace_s=STOP_GRACE_S)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.step.start(stdout=self._log, stderr=subprocess_stdout())
        return self

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> float:
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = self.step.proc.poll()
            if code is not None:
                text = _tail(self.log_path, 20000)
                bad = rejected_argument(text)
                if bad:
                    raise ServingError(f"vLLM rejected the rendered argument {bad} (exit {code}); "
                                       f"command: {shlex.join(self.cmd)}")
                raise ServingError(f"vLLM exited with code {code} before it was ready; last output:\n"
                                   + text[-2000:])
            try:
                status, _ = _http("GET", self.url + "/health", timeout=2)
                if status == 200:
                    self.startup_s = time.perf_counter() - t0
                    return self.startup_s
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        raise ServingError(f"vLLM was not ready on {self.url}/health after {timeout_s:.0f} s; last output:\n"
                           + _tail(self.log_path, 2000))

    def __exit__(self, *exc: object) -> None:
        if self.step is not None:
            self.stopped = self.step.close()
        self._log.close()

    def get(self, path: str) -> Any:
        status, body = _http("GET", self.url + path)
        if status != 200:
            raise ServingError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body) if path.startswith("/v1") else body.decode()

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        t0 = time.perf_counter()
        status, raw = _http("POST", self.url + path, body)
        elapsed = time.perf_counter() - t0
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = {"raw": raw[:300].decode(errors="replace")}
        return status, data, elapsed

    def ttft(self, model: str, prompt: str, max_tokens: int) -> float | None:
        """Seconds to the first streamed token of a completion."""
        body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        req = urllib.request.Request(self.url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            for line in resp:
                if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
                    return time.perf_counter() - t0
        return None


def subprocess_stdout() -> int:
    import subprocess

    return subprocess.STDOUT


def parse_metrics(text: str) -> dict[str, float]:
    """Sums of the Prometheus samples by metric name (labels dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
            except ValueError:
                continue
    return out


def check_server(server: VllmServer, prompt: str, max_tokens: int, expect: str | None = None) -> dict[str, Any]:
    """The client's checks: models listed (adapters with the base as parent), completions and chat under
    each served name, /metrics. Raises `ServingError` naming what failed."""
    local = server.local
    models = server.get("/v1/models").get("data", [])
    listed = {m["id"]: m.get("parent") for m in models}
    if local.base_name not in listed:
        raise ServingError(f"/v1/models does not list the base {local.base_name!r}: {sorted(listed)}")
    for name in local.lora_modules:
        if name not in listed:
            raise ServingError(f"the adapter {name!r} is not listed by /v1/models ({sorted(listed)}): a client "
                               "asking for it would get 'model not found'")
        if listed[name] != local.base_name:
            raise ServingError(f"/v1/models lists the adapter {name!r} with parent {listed[name]!r}, "
                               f"not the base {local.base_name!r}")
    answers: dict[str, Any] = {}
    for name in [*local.lora_modules, local.base_name]:
        status, data, elapsed = server.post("/v1/completions", {
            "model": name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        if status != 200:
            raise ServingError(f"/v1/completions with model {name!r}: HTTP {status}: {json.dumps(data)[:300]}")
        text = data["choices"][0]["text"]
        tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        if tokens == 0:
            raise ServingError(f"/v1/completions with model {name!r} generated no token")
        # Again, warm: the first request to an adapter also loads it (vLLM loads LoRA weights on first use).
        status, _, warm = server.post("/v1/completions", {
            "model": name, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
        ttft = server.ttft(name, prompt, max_tokens)
        c_status, chat, chat_s = server.post("/v1/chat/completions", {
            "model": name, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0})
        answers[name] = {
            "answer": text,
            "completion_tokens": tokens,
            "latency_s": round(elapsed, 4),
            "latency_warm_s": round(warm, 4),
            "tokens_per_s_warm": round(tokens / warm, 2) if warm > 0 else None,
            "ttft_s": round(ttft, 4) if ttft is not None else None,
            "tokens_per_s": round(tokens / elapsed, 2) if elapsed > 0 else None,
            "chat": {"status": c_status, "latency_s": round(chat_s, 4),
                     "answer": chat["choices"][0]["message"]["content"] if c_status == 200 else None,
                     "error": None if c_status == 200 else str(chat.get("error", chat))[:300]},
        }
    primary = next(iter(local.lora_modules), local.base_name)
    if expect is not None and expect.strip() not in answers[primary]["answer"]:
        raise ServingError(f"{primary!r} answered {answers[primary]['answer']!r}, expected {expect.strip()!r}")
    metrics = parse_metrics(server.get("/metrics"))
    wanted = ["vllm:e2e_request_latency_seconds_sum", "vllm:e2e_request_latency_seconds_count",
              "vllm:time_to_first_token_seconds_sum", "vllm:time_to_first_token_seconds_count",
              "vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:lora_requests_info"]
    missing = [m for m in wanted[:4] if m not in metrics]
    if missing:
        raise ServingError(f"/metrics lacks {', '.join(missing)} (scraped {len(metrics)} metric names)")
    found = {k: metrics[k] for k in wanted if k in metrics}
    # An info gauge (its value is a time stamp): what matters is that LoRA requests are reported.
    if "vllm:lora_requests_info" in found:
        found["vllm:lora_requests_info"] = 1.0
    return {
        "served_models": [{"id": k, "parent": v} for k, v in sorted(listed.items())],
        "primary": primary,
        "answers": answers,
        "metrics": found,
        "metric_names": len(metrics),
    }


def serve_and_check(files: dict[str, str], path_map: dict[str, str], prompt: str, max_tokens: int = 16,
                    expect: str | None = None, work_dir: Path | None = None,
                    startup_timeout_s: float = STARTUP_TIMEOUT_S) -> dict[str, Any]:
    """Run the rendered vLLM container here, check it as a client, stop it; the summary of it all."""
    python = require_serving()
    rendered = rendered_server(files)
    local = local_server(rendered, path_map)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="llmops-vllm-") as tmp:
        log_path = (work_dir or Path(tmp)) / "vllm.log"
        with VllmServer(python, local, log_path) as server:
            startup = server.wait_ready(startup_timeout_s)
            try:
                checked = check_server(server, prompt, max_tokens, expect)
            except ServingError as exc:
                raise ServingError(f"{exc}\nlast vLLM output:\n{_errors(_tail(log_path, 60000))}") from None
        primary = checked["answers"][checked["primary"]]
        return {
            "engine": "vllm",
            "vllm_version": installed_version(python),
            "manifest": rendered.file,
            "rendered_args": rendered.args,
            "command": server.cmd,
            "translated": local.translated,
            "startup_s": round(startup, 2),
            "prompt": prompt,
            "model": checked["primary"],
            "answer": primary["answer"],
            "latency_s": primary["latency_s"],
            "ttft_s": primary["ttft_s"],
            "tokens_per_s": primary["tokens_per_s"],
            "latency_warm_s": primary["latency_warm_s"],
            "tokens_per_s_warm": primary["tokens_per_s_warm"],
            "new_tokens": primary["completion_tokens"],
            "served_models": checked["served_models"],
            "answers": checked["answers"],
            "metrics": checked["metrics"],
            "metric_names": checked["metric_names"],
            "stopped": getattr(server, "stopped", None),
        }
