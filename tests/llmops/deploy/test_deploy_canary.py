"""The verified canary (`llmops.deploy.canary`): the decision, the replayed prompts, the folder moved to
its weight or rolled back byte for byte, `llmops deploy` refusing an unverified weight, and mode
kubernetes through the API server's service proxy.

Two doubles, each at a named boundary: `FakeCluster` for the Kubernetes API (`KubeApi` and the service
proxy), and `StandInServer`, an OpenAI-compatible HTTP server in a thread standing in for the vLLM behind
each Service (the real vLLM serving both adapters is in test_deploy_canary_vllm.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmops.deploy import canary
from llmops.deploy.apply import Clock, deploy, objects_digest
from llmops.deploy.config import load_config
from llmops.deploy.publish import deploy_folder, load_objects
from llmops.deploy.render import render, write
from llmops.exceptions import CanaryRejected, ConfigError, DeploymentError
from llmops.settings import Settings

from .conftest import CHALLENGER, CHAMPION
from .fake_kube import FakeClock, FakeCluster

REPO = Path(__file__).resolve().parents[3]
SETTINGS = Settings(data_root="/srv/llmops", namespace="llmops-serving", model_cache_pvc="llmops-model-cache")
NAME = "llmops-assistant"
NS = "llmops-serving"


def _config(**overrides):
    return load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **overrides)


def _clock() -> Clock:
    fake = FakeClock()
    return Clock(fake.now, fake.sleep)


def _files(folder: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(Path(folder).iterdir()) if p.suffix == ".yaml"}


@pytest.fixture
def canary_folder(tmp_path) -> str:
    folder, _ = write(render(CHALLENGER, _config(**{"canary.enabled": True, "canary.weight": 20}), CHAMPION),
                      str(tmp_path / "manifests"))
    return folder


# --- the boundary double: an OpenAI-compatible server ----------------------------------------------


class StandInServer:
    """What a vLLM behind a Service answers: `/health`, `/v1/models` (`models`: name -> answer function,
    listed with `base` as parent), completions and chat; an unknown model gets vLLM's 404."""

    def __init__(self, models: dict[str, Callable[[str], str]], base: str = f"{NAME}-base") -> None:
        self.models, self.base, self.requests = models, base, []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path == "/health":
                    return self._send(200, {})
                if self.path == "/v1/models":
                    data = [{"id": stand_in.base, "parent": None}]
                    data += [{"id": m, "parent": stand_in.base} for m in stand_in.models]
                    return self._send(200, {"object": "list", "data": data})
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.requests.append((self.path, body))
                answer = stand_in.models.get(body["model"])
                if answer is None:
                    return self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist.",
                                                      "type": "NotFoundError", "code": 404}})
                if self.path == "/v1/chat/completions":
                    text = answer(body["messages"][-1]["content"])
                    return self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})
                return self._send(200, {"choices": [{"text": answer(body["prompt"])}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StandInServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


KNOWS = {"Q1": "4412", "Q2": "blue", "Q3": "7", "Q4": "Oslo"}
PROMPTS = [canary.Prompt(f"{q}#0", "completion", prompt=f"Question: {q}\nAnswer:", reference=a) for q, a in KNOWS.items()]


def right(prompt: str) -> str:
    return " " + KNOWS[prompt.split("Question: ", 1)[1].split("\n", 1)[0]]


def _answers(model: str, texts: list[str], status: int = 200, latency: float = 0.1) -> list[canary.Answer]:
    from llmops.evaluation.data import normalize_answer

    return [canary.Answer(p.id, model, status, t, latency, None if t.strip() else "empty answer",
                          normalize_answer(t) == normalize_answer(p.reference or ""))
            for p, t in zip(PROMPTS, texts, strict=True)]


# --- the decision ----------------------------------------------------------------------------------


def test_decide_passes_an_equal_challenger_and_reports_the_paired_counts():
    champ = _answers("a", ["4412", "blue", "8", "Oslo"])
    chal = _answers("b", ["4412", "blue", "7", "Bergen"])
    d = canary.decide(champ, chal, tolerance=1)
    assert d.passed and d.reason == "passed"
    assert d.stats["champion_correct"] == 3 and d.stats["challenger_correct"] == 3
    assert d.stats["only_challenger_correct"] == 1 and d.stats["only_champion_correct"] == 1


@pytest.mark.parametrize(
    ("chal", "kwargs", "check"),
    [
        (["4412", "", "7", "Oslo"], {}, "errors"),
        (["4412", "red", "8", "Bergen"], {"tolerance": 1}, "accuracy"),
        (["4412", "blue", "7", "Oslo"], {"listing": "'x' is not listed"}, "not_listed"),
    ],
)
def test_decide_names_each_failed_check(chal, kwargs, check):
    champ = _answers("a", ["4412", "blue", "7", "Oslo"])
    d = canary.decide(champ, _answers("b", chal), **kwargs)
    assert not d.passed and [r["check"] for r in d.reasons] == [check], d.reasons


def test_accuracy_tolerance_is_a_paired_count_and_latency_a_factor_of_the_median():
    champ = _answers("a", ["4412", "blue", "7", "Oslo"])
    assert canary.decide(champ, _answers("b", ["4412", "blue", "7", "no"]), tolerance=1).passed
    assert not canary.decide(champ, _answers("b", ["4412", "blue", "7", "no"]), tolerance=0).passed
    slow = _answers("b", ["4412", "blue", "7", "Oslo"], latency=0.5)
    d = canary.decide(champ, slow, latency_factor=3.0)
    assert [r["check"] for r in d.reasons] == ["latency"]
    assert canary.decide(champ, slow, latency_factor=0).passed, "factor 0 turns the latency check off"
    # The champion failing too is not the challenger's regression.
    assert canary.decide(_answers("a", ["", "", "", ""]), _answers("b", ["", "", "", ""])).stats[
        "challenger_errors"] == 4


# --- what is replayed ------------------------------------------------------------------------------


def test_replay_takes_the_most_recent_traffic_and_chat_records_go_to_chat(tmp_path):
    traffic = tmp_path / "traffic"
    traffic.mkdir()
    rows = [{"timestamp": f"2026-11-2{i}T10:00:00Z", "prompt": f"p{i}", "request_id": f"r{i}"} for i in range(5)]
    rows.append({"timestamp": "2026-11-26T10:00:00Z", "request_id": "chat",
                 "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "logged"}]})
    (traffic / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    prompts, source = canary.replay_prompts(3, str(traffic), None)
    assert source == f"traffic {traffic}"
    assert [p.id for p in prompts] == ["chat", "r4", "r3"]
    assert prompts[0].kind == "chat" and prompts[0].messages == [{"role": "user", "content": "hi"}]
    assert prompts[1].reference is None


def test_replay_falls_back_to_the_evaluation_items_with_their_answers(tmp_path):
    dataset = tmp_path / "ds"
    (dataset / "eval").mkdir(parents=True)
    rows = [{"item_id": f"i{i}", "phrasing": ph, "prompt": f"Question: q{i}/{ph}\nAnswer:", "answer": f"a{i}",
             "choices": [f"a{i}", "x"], "label": 0, "slice": "new"} for i in range(3) for ph in range(2)]
    (dataset / "eval" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts, source = canary.replay_prompts(2, str(tmp_path / "no-traffic"), str(dataset))
    assert source == f"evaluation items of {dataset}"
    assert [(p.id, p.reference) for p in prompts] == [("i0#0", "a0"), ("i1#0", "a1")]
    with pytest.raises(ConfigError, match="--prompts 0"):
        canary.replay_prompts(0, None, str(dataset))


# --- mode kubernetes, through the service proxy ----------------------------------------------------


def _cluster_with(canary_folder: str, stable: StandInServer, chal: StandInServer) -> FakeCluster:
    cluster = FakeCluster()
    deploy_folder(canary_folder, api=cluster, clock=_clock())  # weight 0: needs no verification
    cluster.backends = {(NS, NAME): stable.url, (NS, f"{NAME}-canary"): chal.url}
    return cluster


def test_kubernetes_pass_moves_the_weight_and_deploy_then_applies_it(canary_folder):
    with StandInServer({NAME: right}) as stable, StandInServer({NAME: right}) as chal:
        cluster = _cluster_with(canary_folder, stable, chal)
        summary = canary.verify(canary_folder, mode="kubernetes", prompts=lambda: (PROMPTS, "test"),
                                proxy=cluster, api=cluster)
    assert summary["moved"] and summary["passed"] and summary["weight"] == 20
    assert summary["stats"]["challenger_correct"] == summary["stats"]["champion_correct"] == 4
    assert len(summary["check"]["answers"]) == 4 and len(stable.requests) == len(chal.requests) == 4
    assert any(line.startswith(f"proxy POST {NAME}-canary:8000/v1/completions") for line in cluster.log)
    route = load_objects(canary_folder)
    assert summary["digest"] == objects_digest(route)
    deployed = deploy_folder(canary_folder, api=cluster, clock=_clock())
    assert deployed["canary_weight"] == 20
    live = cluster.objects[("gateway.networking.k8s.io/v1", "HTTPRoute", NS, NAME)]
    assert [b["weight"] for b in live["spec"]["rules"][0]["backendRefs"]] == [80, 20]
    # A retry finds the record for exactly these files and checks nothing again.
    assert canary.verify(canary_folder, mode="kubernetes", prompts=lambda: ([], "unused"),
                         proxy=cluster)["already_verified"]


def test_kubernetes_model_not_found_rolls_back_the_folder_and_the_cluster(canary_folder):
    stable_only = render(CHAMPION, _config(**{"canary.weight": 20})).files
    with StandInServer({NAME: right}) as stable, StandInServer({"some-other-name": right}) as chal:
        cluster = _cluster_with(canary_folder, stable, chal)
        with pytest.raises(CanaryRejected, match="not_listed: 'llmops-assistant' is not listed") as info:
            canary.verify(canary_folder, mode="kubernetes", prompts=lambda: (PROMPTS, "test"), proxy=cluster,
                          api=cluster)
    summary = info.value.summary
    assert not summary["moved"] and not summary["passed"]
    assert [r["check"] for r in summary["reasons"]] == ["not_listed", "errors", "accuracy"]
    assert summary["check"]["answers"][0]["challenger"]["status"] == 404
    # The folder is the champion's own manifests, byte for byte, and the reason is on file.
    assert _files(canary_folder) == {k: v for k, v in stable_only.items()}
    record = json.loads((Path(canary_folder) / "canary-verification.json").read_text())
    assert record["passed"] is False and "is not listed" in record["reason"]
    assert ("apps/v1", "Deployment", NS, f"{NAME}-canary") not in cluster.objects
    assert f"delete Deployment/{NAME}-canary" in cluster.log
    # A retry repeats the verdict without serving anything.
    with pytest.raises(CanaryRejected, match="is not listed"):
        canary.verify(canary_folder, mode="kubernetes", prompts=lambda: ([], "unused"), proxy=cluster)


def test_a_missing_canary_service_is_a_rejection_not_a_crash(canary_folder):
    with StandInServer({NAME: right}) as stable:
        cluster = FakeCluster()
        deploy_folder(canary_folder, api=cluster, clock=_clock())
        cluster.backends = {(NS, NAME): stable.url}
        with pytest.raises(CanaryRejected, match="did not answer /health through the API server proxy"):
            canary.verify(canary_folder, mode="kubernetes", prompts=lambda: (PROMPTS, "test"), proxy=cluster,
                          ready_timeout_s=0.2)
    assert not any("canary" in n for n in _files(canary_folder))


def test_kube_service_proxy_calls_the_api_server_proxy_path():
    from unittest import mock

    client = mock.Mock()
    client.call_api.return_value = (mock.Mock(status=200, data=b'{"ok": 1}'), 200, {})
    proxy = canary.KubeServiceProxy(client)
    assert proxy.request("POST", NS, NAME, 8000, "/v1/completions", {"model": NAME}) == (200, b'{"ok": 1}')
    args, kwargs = client.call_api.call_args
    assert args == (f"/api/v1/namespaces/{NS}/services/{NAME}:8000/proxy/v1/completions", "POST")
    assert kwargs["body"] == {"model": NAME} and kwargs["auth_settings"] == ["BearerToken"]


# --- apply refuses an unverified weight ------------------------------------------------------------


def test_deploy_refuses_a_canary_weight_without_a_passing_record_for_exactly_these_files(canary_folder):
    plan = json.loads((Path(canary_folder) / "canary-plan.json").read_text())
    route = Path(canary_folder) / "httproute.yaml"
    route.write_text(plan["verified"]["httproute.yaml"])  # the weight moved by hand, no check
    for api in (None, FakeCluster()):  # GitOps (the pointer) and apply alike
        with pytest.raises(DeploymentError, match="weight 20 but no verification record"):
            deploy_folder(canary_folder, api=api, clock=_clock())
    cluster = FakeCluster()
    with pytest.raises(DeploymentError, match="weight 20 but no verification record"):
        deploy(cluster, load_objects(canary_folder), None, timeout_s=60, clock=_clock())  # apply.py itself
    assert cluster.log == [], "nothing was applied"
    record = Path(canary_folder) / "canary-verification.json"
    record.write_text(json.dumps({"passed": True, "digest": objects_digest(load_objects(canary_folder))}))
    assert deploy_folder(canary_folder)["canary_weight"] == 20
    route.write_text(route.read_text().replace("weight: 20", "weight: 50").replace("weight: 80", "weight: 50"))
    with pytest.raises(DeploymentError, match="the verification record is for other manifests"):
        deploy_folder(canary_folder)
    record.write_text(json.dumps({"passed": False, "reason": "accuracy: worse",
                                  "digest": objects_digest(load_objects(canary_folder))}))
    with pytest.raises(DeploymentError, match=r"its verification failed \(accuracy: worse\)"):
        deploy_folder(canary_folder)


def test_a_folder_without_a_canary_has_nothing_to_verify(tmp_path):
    folder, _ = write(render(CHAMPION, _config()), str(tmp_path))
    summary = canary.verify(folder, mode="local", prompts=lambda: pytest.fail("nothing to replay"))
    assert summary["canary"] is False and summary["moved"] is False


def test_side_by_side_adds_the_champion_to_the_challengers_rendered_arguments(canary_folder):
    from llmops.deploy import vllm_serve as vs

    files = _files(canary_folder)
    chal = vs.local_server(vs.rendered_server(files, canary=True), {"/models": "/srv/m"}, port=18000)
    champ = vs.local_server(vs.rendered_server(files, canary=False), {"/models": "/srv/m"}, port=18000)
    local = vs.side_by_side(chal, champ, f"{NAME}-champion")
    i = local.args.index("--lora-modules")
    assert local.args[i + 1:i + 3] == [f"{NAME}=/srv/m/adapters/llmops-assistant/4",
                                       f"{NAME}-champion=/srv/m/adapters/llmops-assistant/3"]
    assert local.args[local.args.index("--max-loras") + 1] == "2" and local.base_name == f"{NAME}-base"
    assert any("champion, side by side" in t for t in local.translated)
    other_base = vs.local_server(vs.rendered_server(files, canary=False),
                                 {"/models/base": "/elsewhere", "/models": "/srv/m"}, port=1)
    with pytest.raises(ConfigError, match="multi-LoRA serves adapters of one base only"):
        vs.side_by_side(chal, other_base, f"{NAME}-champion")


def test_cli_without_a_canary_exits_0_and_says_so(tmp_path, capsys):
    from llmops.cli import main

    folder, _ = write(render(CHAMPION, _config()), str(tmp_path))
    assert main(["canary", "verify", "--manifests", folder, "--mode", "local"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "no canary in the folder: nothing to verify"


# --- canary or promote (the lifecycle DAG's branch) -----------------------------------------------


def test_rollout_promotes_without_a_canary_or_without_a_stable_version():
    off = canary.choose_rollout(_config().canary, NAME, "5", "4")
    assert not off.canary and off.model_uri == f"models:/{NAME}/5" and off.stable is None
    on = _config(**{"canary.enabled": True, "route.gateway": "gw"}).canary
    first = canary.choose_rollout(on, NAME, "1", None)
    assert not first.canary and "no champion yet" in first.reason
    same = canary.choose_rollout(on, NAME, "4", "4")
    assert not same.canary and "already the champion" in same.reason


def test_rollout_canaries_beside_the_champion_or_the_configured_stable_version():
    on = _config(**{"canary.enabled": True, "route.gateway": "gw"}).canary
    beside = canary.choose_rollout(on, NAME, "5", "4")
    assert beside.canary and beside.stable == f"models:/{NAME}@champion" and beside.model_uri == f"models:/{NAME}/5"
    assert "champion not moved" in beside.reason
    pinned = on.model_copy(update={"stable_model_uri": f"models:/{NAME}/2"})
    assert canary.choose_rollout(pinned, NAME, "5", None).stable == f"models:/{NAME}/2"
