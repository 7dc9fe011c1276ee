"""``marquee traffic replay`` against a router slower than the asked rate, and stopped midway.

The router is the real application under uvicorn on 127.0.0.1 (``LiveRouter``) in this
process; its model servers are the rollout tests' KServe V1 handlers, here taking 100 ms per
answer. The replay is the installed ``marquee`` in a process of its own, so that its exit code
and what it prints when it gets SIGINT or SIGTERM are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.replay.cli import app
from tests.conftest import wait_until
from tests.rollout.test_replay_and_sources import LiveRouter
from tests.serving.test_replay_report_truth import SlowServers

NOBODY = "http://127.0.0.1:9"  # nothing listens on the discard port


def _holdout(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.parquet"
    pd.DataFrame({"user_id": [1, 1, 2, 3], "item_id": [8, 9, 15, 22],
                  "timestamp": [1, 2, 3, 4]}).to_parquet(path)
    return path


def _replay(tmp_path: Path, router: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "marquee"), "traffic", "replay", "--holdout",
         str(_holdout(tmp_path)), "--router", router, "-o", "json", *args],
        env={**env, "MARQUEE_HOME": str(tmp_path / "home")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_duration_ends_the_replay_when_the_router_cannot_keep_up(tmp_path: Path) -> None:
    """100 requests/s for 2 s, two slots and 100 ms per answer (20/s at most). Before, the
    pacer created a task for every request due in those 2 s whatever was still in flight
    (200 here; at ``--rate 1e7`` it took 4.8 GB before it was killed), then waited for all of
    them: ``--duration 2`` ran 10.6 s. The scheduler now starts a request only when a slot is
    free (its latency still counts from when it was due) and stops at ``--duration``."""
    with LiveRouter(SlowServers()) as r:
        proc = _replay(tmp_path, r.url, "--rate", "100", "--duration", "2",
                       "--concurrency", "2")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["errors"] == 0
    assert summary["requests"] < 100, summary  # at most ~20/s answered in 2 s, not 200
    assert summary["seconds"] < 4, summary     # 2 s and the last answers, not 10
    assert summary["p99_ms"] > 500, summary    # the late ones still count from when due


def test_an_infinite_rate_is_a_usage_error(tmp_path: Path) -> None:
    """``--rate inf`` passed the option's minimum: every request was due at 0 s, and with
    ``--duration`` the pacer never stopped creating tasks (a hang that ate all memory)."""
    result = CliRunner().invoke(app, ["replay", "--holdout", str(_holdout(tmp_path)),
                                      "--router", NOBODY, "--rate", "inf", "--requests", "3"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--rate'" in result.output and "inf" in result.output


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_replay_and_it_reports_what_it_did(tmp_path: Path, sig: int,
                                                                code: int) -> None:
    """Before, Ctrl-C printed only "Aborted!" (exit 1) and SIGTERM killed the replay without
    a word (exit 143): what the requests sent so far showed was lost. Now it stops starting
    requests, waits for those in flight, prints its summary and exits 128 + the signal."""
    servers = SlowServers()
    with LiveRouter(servers) as r:
        proc = _replay(tmp_path, r.url, "--rate", "20", "--duration", "600")
        try:
            wait_until(lambda: servers.calls["base.test"] >= 3, timeout=60,
                       what="three requests answered")
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=20)  # promptly, not after --duration
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, err
    summary = json.loads(out)
    assert summary["requests"] >= 3 and summary["errors"] == 0, summary
    assert err.strip().splitlines()[-1] == (
        f"stopped by {signal.Signals(sig).name} after {summary['requests']} requests"), err


def test_a_steep_position_bias_examines_the_top_position_without_a_traceback(
        tmp_path: Path) -> None:
    """``--position-bias 1100`` (any b with 2**b above the float range) divided by
    ``2.0 ** 1100``: an OverflowError inside the request's task, which nobody awaited. The
    replay printed the task's traceback, exited 0, and counted that visit as not clicked.
    Such a bias only examines the top position, as ``--position-bias 200`` does."""
    with LiveRouter(SlowServers()) as r:
        runs = [_replay(tmp_path, r.url, "--requests", "3", "--rate", "50", "--position-bias",
                        bias).communicate(timeout=60) for bias in ("200", "1100")]
    for out, err in runs:
        assert "Traceback" not in err, err
    steep, steeper = (json.loads(out)["variants"]["baseline"] for out, _ in runs)
    assert steeper["clicked"] == steep["clicked"] > 0, (steep, steeper)


def test_an_exception_in_a_request_task_ends_the_replay_with_it() -> None:
    """An exception raised by one launched request died with its task: the pacer went on
    and returned as if the replay had succeeded (only a "Task exception was never
    retrieved" traceback at exit said otherwise). It now starts no more requests and raises
    it once those in flight have ended."""
    import asyncio
    import time

    from serving.replay.engine import open_loop

    launched: list[int] = []

    async def launch(i: int, t: float) -> None:
        launched.append(i)
        if i == 2:
            raise OverflowError("in request 2")

    async def run() -> None:
        await open_loop(launch, rate=1000, start=time.perf_counter(), requests=1000)

    with pytest.raises(OverflowError, match="in request 2"):
        asyncio.run(run())
    assert len(launched) < 1000
