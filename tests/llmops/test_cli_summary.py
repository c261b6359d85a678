"""`emit_summary`: the one ending of every step command."""

from __future__ import annotations

import argparse
import json

from llmops.cli import emit_summary


def test_writes_the_file_prints_and_returns_the_code(tmp_path, capsys):
    path = tmp_path / "out" / "summary.json"
    code = emit_summary(argparse.Namespace(summary_json=str(path)), {"b": 1, "a": "x"}, code=3)
    assert code == 3
    assert json.loads(path.read_text()) == {"a": "x", "b": 1}
    assert json.loads(capsys.readouterr().out) == {"a": "x", "b": 1}


def test_without_the_flag_only_prints(tmp_path, capsys):
    assert emit_summary(argparse.Namespace(summary_json=None), {"a": 1}) == 0
    assert json.loads(capsys.readouterr().out) == {"a": 1}
    assert list(tmp_path.iterdir()) == []
