"""Human approval before promotion: `approval: none` goes ahead unasked; a decision (or the timeout's
default, Reject) is recorded on the model version; and, against the real Airflow, an approval driven
through its REST API (`PATCH .../hitlDetails`), with the plugin's report pages served by its API server
and opened in headless Chromium."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from llmops.reports.lineage import (
    TAG_APPROVAL_AT,
    TAG_APPROVAL_BY,
    TAG_APPROVAL_DECISION,
    TAG_APPROVAL_REASON,
)
from llmops.settings import load_settings
from tests.waiting import wait_for

HERE = Path(__file__).parent


def _version_tags(name: str, version: str) -> dict[str, str]:
    from llmops.registry import mlflow_client

    return mlflow_client(load_settings()).get_model_version(name, version).tags


def _operator(gate_report, name, version, approval="required"):
    from llmops_operators.approval import PromotionApprovalOperator

    return PromotionApprovalOperator(
        task_id="approve", gate_report=str(gate_report), version=version, model_name=name, approval=approval
    )


def test_approval_none_promotes_without_asking(gate_report, model_version):
    name, version = model_version
    op = _operator(gate_report, name, version, approval="none")
    assert op.execute({}) == {"approval": "none", "version": version, "registered_model_name": name,
                              "report_uri": str(gate_report), "decision": "approval"}
    assert op.response_timeout.total_seconds() == 72 * 3600


def test_the_providers_approval_operator_runs_the_request():
    """The task builds the standard provider's ApprovalOperator when it runs (its module stays out of the
    DAG's parse): Reject by default and at the timeout, one form field, this task's downstream to skip."""
    from airflow.providers.standard.operators.hitl import ApprovalOperator
    from airflow.sdk import DAG
    from airflow.sdk.bases.operator import BaseOperator

    from llmops_operators.approval import PromotionApprovalOperator

    assert (PromotionApprovalOperator.APPROVE, PromotionApprovalOperator.REJECT) == (
        ApprovalOperator.APPROVE, ApprovalOperator.REJECT)
    with DAG("approval_shape", schedule=None):
        op = PromotionApprovalOperator(task_id="approve", gate_report="r.json", version="3", model_name="m",
                                       subject="Promote m/3?")
        op >> BaseOperator(task_id="promote")
    provider = op.approval_operator("the report")
    assert isinstance(provider, ApprovalOperator) and provider.task_id == "approve"
    assert (provider.subject, provider.body, provider.options, provider.defaults) == (
        "Promote m/3?", "the report", ["Approve", "Reject"], ["Reject"])
    assert provider.response_timeout == op.response_timeout and list(provider.serialized_params) == ["reason"]
    assert provider.downstream_task_ids == {"promote"}


def test_the_operator_module_does_not_import_the_hitl_provider():
    import subprocess
    import sys

    code = ("import sys, airflow.sdk, llmops_operators.approval; "
            "print('airflow.providers.standard.operators.hitl' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decisions_are_recorded_on_the_version(gate_report, model_version):
    name, version = model_version
    op = _operator(gate_report, name, version)
    body = op._body()
    assert "## Gate: PROMOTE" in body and "corpus_mc[new]/acc" in body and "corpus_mc[retained]/acc" in body
    assert "/llmops/gate?uri=" in body and f"/llmops/lineage/{name}/{version}" in body

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    op.execute_complete({}, {"chosen_options": ["Reject"], "params_input": {"reason": "retained slice looks thin"},
                             "responded_at": at, "responded_by_user": {"id": "7", "name": "alice"}})
    tags = _version_tags(name, version)
    assert (tags[TAG_APPROVAL_DECISION], tags[TAG_APPROVAL_BY], tags[TAG_APPROVAL_AT], tags[TAG_APPROVAL_REASON]) == (
        "rejected", "alice", at.isoformat(), "retained slice looks thin"
    )
    # The timeout resumes the task with the default (Reject) and no responder.
    op.execute_complete({}, {"chosen_options": ["Reject"], "params_input": {"reason": ""}, "responded_at": at,
                             "responded_by_user": None, "timedout": True})
    tags = _version_tags(name, version)
    assert (tags[TAG_APPROVAL_DECISION], tags[TAG_APPROVAL_BY]) == ("rejected", "timeout")
    assert tags[TAG_APPROVAL_REASON] == "no decision before the timeout"


@pytest.fixture(scope="module")
def local_airflow(tmp_path_factory, gate_report, model_version, drift_report, train_output):
    from llmops.airflow_local import LocalAirflow
    from tests.conftest import _free_port

    home = tmp_path_factory.mktemp("airflow-approval")
    port = _free_port()
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(HERE / "approval_dags"),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "LLMOPS_DRIFT_SCHEDULE": "none",
        "LLMOPS_RETRAIN_SCHEDULE": "none",
    }
    with LocalAirflow(home=home, port=port, extra_env=env) as airflow:
        yield airflow


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_approval_through_the_airflow_api(local_airflow, gate_report, model_version):
    airflow = local_airflow
    name, version = model_version
    airflow.wait_for_dags(["llmops_approval_test"])
    run_id = airflow.trigger("llmops_approval_test", {"gate_report": str(gate_report), "version": version,
                                                      "model_name": name})
    hitl = f"/api/v2/dags/llmops_approval_test/dagRuns/{quote(run_id, safe='')}/taskInstances/approve/-1/hitlDetails"

    detail = wait_for("the approval request", lambda: _get_or_none(airflow, hitl), timeout=180)
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert "## Gate: PROMOTE" in detail["body"] and "corpus_mc[new]/acc" in detail["body"]
    assert list(detail["params"]) == ["reason"]
    wait_for("the task to wait for input",
          lambda: airflow.task_states("llmops_approval_test", run_id).get("approve") == "awaiting_input", 60)
    # Answer once the scheduler has handled the parked try's end (see `_parked`).
    log = airflow.home / "standalone.log"
    wait_for("the scheduler to see the parked try end", lambda: _parked(log, run_id), 60)

    answer = airflow.patch(hitl, {"chosen_options": ["Approve"], "params_input": {"reason": "gain on new is real"}})
    assert answer["chosen_options"] == ["Approve"]
    run = airflow.wait_for_run("llmops_approval_test", run_id, timeout=180)
    assert run["state"] == "success", airflow.task_states("llmops_approval_test", run_id)
    tags = _version_tags(name, version)
    assert tags[TAG_APPROVAL_DECISION] == "approved" and tags[TAG_APPROVAL_REASON] == "gain on new is real"
    assert tags[TAG_APPROVAL_BY] == answer["responded_by"]["name"]

    # The plugin's pages, from the API server, under its authentication (all-admins in local mode).
    for path in (f"/llmops/gate?uri={quote(str(gate_report), safe='')}", f"/llmops/lineage/{name}/{version}"):
        with _open(airflow.url + path) as resp:
            assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
    started = time.perf_counter()
    with _open(f"{airflow.url}/llmops/lineage/{name}/{version}") as resp:
        assert "approved by" in resp.read().decode()
    print(f"lineage page from the API server: {time.perf_counter() - started:.3f}s")


def _parked(log: Path, run_id: str) -> bool:
    """True once the scheduler has handled the executor's event for the try parked awaiting input.

    Airflow 3.3.2 races otherwise: a response that comes before the scheduler reads the parked try's
    "success" event from the executor queues the task again, and that late event then finds the task
    queued, not awaiting input, and fails it ("finished with state success, but the task instance's state
    attribute is queued"). Waiting for the worker's exit alone is not enough: the scheduler may read the
    event seconds later. No human answers that fast."""
    return (f"Received executor event with state success for task instance TaskInstanceKey("
            f"dag_id='llmops_approval_test', task_id='approve', run_id='{run_id}'") in log.read_text(errors="replace")


def _get_or_none(airflow, path):
    from llmops.airflow_local import AirflowError

    try:
        return airflow.get(path)
    except AirflowError:
        return None


def _open(url):
    import urllib.request

    return urllib.request.urlopen(url, timeout=60)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
def test_ui_in_headless_chromium(local_airflow, gate_report, model_version, drift_report, train_output, tmp_path):
    """Headless Chromium (Debian packages, driven by Selenium; nothing downloads a browser) opens the
    approval in Airflow's UI, then, after a rejection through the API, follows the finished task's
    "Report" and "Lineage" extra links (as the REST API gives them) and the drift and loss pages."""
    pytest.importorskip("selenium", reason="selenium (the dev extra) is not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    airflow = local_airflow
    name, version = model_version
    airflow.wait_for_dags(["llmops_approval_test"])
    log = airflow.home / "standalone.log"
    run_id = airflow.trigger("llmops_approval_test", {"gate_report": str(gate_report), "version": version,
                                                      "model_name": name})
    run_path = f"/api/v2/dags/llmops_approval_test/dagRuns/{quote(run_id, safe='')}"
    wait_for("the task to wait for input",
          lambda: airflow.task_states("llmops_approval_test", run_id).get("approve") == "awaiting_input", 180)

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    shots = Path(__import__("os").environ.get("UI_SCREENSHOTS_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        base = airflow.url
        # The approval as a reviewer sees it: Airflow's "Required actions" page with the gate report body.
        driver.get(f"{base}/dags/llmops_approval_test/runs/{quote(run_id, safe='')}/tasks/approve/required_actions")
        WebDriverWait(driver, 90).until(lambda d: "corpus_mc" in d.find_element(By.TAG_NAME, "body").text)
        assert "Approve" in driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(str(shots / "approval.png"))

        wait_for("the scheduler to see the parked try end", lambda: _parked(log, run_id), 60)
        airflow.patch(f"{run_path}/taskInstances/approve/-1/hitlDetails",
                      {"chosen_options": ["Reject"], "params_input": {"reason": "wait for more retained items"}})
        run = airflow.wait_for_run("llmops_approval_test", run_id, timeout=180)
        assert run["state"] == "success", airflow.task_states("llmops_approval_test", run_id)
        tags = _version_tags(name, version)
        assert (tags[TAG_APPROVAL_DECISION], tags[TAG_APPROVAL_REASON]) == ("rejected", "wait for more retained items")

        links = airflow.get(f"{run_path}/taskInstances/approve/links")["extra_links"]
        assert links["Report"].startswith(f"{base}/llmops/gate?uri="), links
        driver.get(links["Report"])
        assert driver.find_element(By.TAG_NAME, "h1").text == "Gate: PROMOTE"
        assert len(driver.find_elements(By.CSS_SELECTOR, "#metrics tr")) == 4  # header + 3 rules
        driver.save_screenshot(str(shots / "gate-report.png"))

        driver.get(links["Lineage"])
        assert "snap-20260101-abcdef" in driver.find_element(By.ID, "corpus-snapshot").text
        assert "rejected by" in driver.find_element(By.ID, "approval").text
        driver.save_screenshot(str(shots / "lineage.png"))

        driver.get(f"{base}/llmops/drift?uri={quote(str(drift_report), safe='')}")
        images = driver.find_elements(By.TAG_NAME, "img")
        assert images and all(driver.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
        driver.save_screenshot(str(shots / "drift-report.png"))

        driver.get(f"{base}/llmops/loss?uri={quote(str(train_output), safe='')}")
        assert driver.find_element(By.ID, "loss").size["width"] > 0
        driver.save_screenshot(str(shots / "loss-curve.png"))
    finally:
        driver.quit()
