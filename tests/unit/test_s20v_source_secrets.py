"""Alertmanager, Prometheus and router URLs may carry basic-auth credentials (httpx sends
them): the errors that name these URLs mask the password.

Before, ``marquee incidents`` printed the Alertmanager URL whole when it could not read the
alerts, and the rollout controller's ``SourceError`` (logged, and kept in the rollout's
status) named the Prometheus or router URL whole.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from serving.rollout.sources import PrometheusSource, RouterAdmin, SourceError

SECRET = "S3CRET-v20s"


def test_incidents_name_an_unreachable_alertmanager_without_its_password(
        tmp_path: Path) -> None:
    url = f"http://oncall:{SECRET}@127.0.0.1:{free_port()}"  # nothing listens there
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "incidents"],
                         env={**clean, "MARQUEE_HOME": str(tmp_path), "COLUMNS": "200",
                              "MARQUEE_ALERTMANAGER_URL": url},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert (f"cannot read alerts from {url.replace(SECRET, '***')}/api/v2/alerts"
            in out.stdout + out.stderr), out.stdout + out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_an_unreachable_prometheus_or_router_is_named_without_its_password() -> None:
    port = free_port()
    prometheus = PrometheusSource(f"http://ops:{SECRET}@127.0.0.1:{port}", timeout=2)
    with pytest.raises(SourceError) as caught:
        prometheus.window(0.0, 60.0)
    assert str(caught.value).startswith(f"prometheus http://ops:***@127.0.0.1:{port}: ")
    assert SECRET not in str(caught.value)

    router = RouterAdmin(f"http://ops:{SECRET}@127.0.0.1:{port}", timeout=2)
    with pytest.raises(SourceError) as caught:
        router.routing()
    assert str(caught.value).startswith(f"router http://ops:***@127.0.0.1:{port} unreachable")
    assert SECRET not in str(caught.value)
