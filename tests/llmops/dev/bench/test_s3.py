"""`llmops bench s3` end to end at a small size: a real moto server process, a multipart round trip."""

from __future__ import annotations

import json

import pytest

from llmops import storage
from llmops.cli import main


@pytest.mark.s3
def test_bench_s3_round_trips_and_reports_both_peaks(capsys, tmp_path):
    size_mb = storage.MULTIPART_THRESHOLD // storage.MiB + 4
    assert main(["bench", "s3", "--size-mb", str(size_mb), "--workdir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["size_mb"] == size_mb and out["sha256_match"] is True
    assert out["parts"] == 2  # above the threshold: a multipart upload
    assert out["upload_s"] > 0 and out["download_s"] > 0
    assert out["peak_rss_mb"] >= out["rss_before_transfers_mb"] > 0
    assert out["moto_server_peak_rss_mb"] > 0
    assert list(tmp_path.iterdir()) == []  # the source and the copy are removed


def test_bench_s3_rejects_a_bad_size():
    from llmops.dev.bench.s3 import run_s3_bench
    from llmops.exceptions import ConfigError

    with pytest.raises(ConfigError, match="--size-mb 0 must be at least 1"):
        run_s3_bench(0)
