"""`marquee demo` writes its report whatever ends the run: before, only DemoFailed,
TimeoutError and RuntimeError were caught; a registry or store error (MarqueeError), a
webhook answering 4xx (httpx), a missing file ended in a traceback with no report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_a_registry_error_still_writes_the_report_and_exits_1(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(home), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1", "MARQUEE_REGISTRY_URI": "bogus://nowhere"}
    out = subprocess.run([sys.executable, "-m", "marquee.cli", "demo", "--alerting", "direct"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    (report,) = (home / "demo").glob("*/report.html")
    page = report.read_text()
    assert "RegistryError" in page and "bogus://nowhere" in page and ">failed<" in page
    record = json.loads((report.parent / "report.json").read_text())
    assert record["outcome"] == "failed"
    assert record["notes"][-1].startswith("failed: RegistryError: reading aliases failed")
    assert record["steps"][0]["step"].startswith("train")  # what ran before is kept
    assert str(report) in out.stdout.replace("\n", "")
    (stored,) = (home / "store" / "demo").glob("*/report.html")  # and in the store
    assert stored.read_text() == page
