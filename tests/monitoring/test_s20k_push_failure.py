"""`marquee drift check` / `marquee skew check` when the Pushgateway cannot be reached.

Before, the CronJob's check computed and published its verdict, then the push raised
URLError out of the command: an 89-line Python traceback, exit 1, and the verdict itself
never printed (nor the --json summary an on-call script reads). Now the verdict is printed
as usual, then one `error:` line names the Pushgateway and why the push failed, and the
exit code is 1: the alerts cannot see this verdict, so the Job must not look healthy.
"""

from __future__ import annotations

import json

import pytest
from conftest import free_port
from test_drift_check import HOUR, _drift_cli
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

from marquee.store import LocalStore
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs


def test_drift_check_prints_its_verdict_and_one_error_line_when_the_push_fails(
        tmp_path) -> None:
    write_bundle(tmp_path / "bundle", n_reference=2_000)
    write_payload_logs(LocalStore(tmp_path / "store"),
                       payload_table(2_000, 4, "demographic", start_ts=HOUR))
    gateway = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--bundle", str(tmp_path / "bundle"), "--store", str(tmp_path / "store"),
            "--until", "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
            "--no-embeddings", "--pushgateway", gateway]
    out = _drift_cli(args, tmp_path / "home")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    assert "drift detected: 5/20 features drifted" in out.stdout
    assert "report_html: " in out.stdout  # published before the push
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: the gauges were not pushed to {gateway} (the alerts do not see this "
        "verdict): "), out.stderr
    assert "Connection refused" in lines[0]

    as_json = _drift_cli([*args, "--json", "--no-publish"], tmp_path / "home")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    summary = json.loads(as_json.stdout)
    assert summary["drift_detected"] is True
    assert summary["push_error"].startswith(f"the gauges were not pushed to {gateway}")


def test_skew_check_prints_its_verdict_and_one_error_line_when_the_push_fails(
        world: dict, tmp_path) -> None:  # noqa: F811
    pytest.importorskip("recsys.features")
    bundle, fn = _skew_bundle(world, tmp_path)
    write_payload_logs(LocalStore(tmp_path / "store"), _served_logs(world, fn, 1_740_787_200))
    gateway = f"http://127.0.0.1:{free_port()}"
    out = _skew_cli(tmp_path, bundle, "2025-03-01T02:00:00Z", "--pushgateway", gateway)
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stdout + out.stderr
    summary = json.loads(out.stdout)  # --json: the verdict is still printed
    assert summary["skewed_features"] == [] and summary["joined"] == 3000
    assert summary["push_error"].startswith(f"the gauges were not pushed to {gateway}")
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: {summary['push_error']}", out.stderr
