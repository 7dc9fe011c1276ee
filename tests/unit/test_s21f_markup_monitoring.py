"""`marquee drift check` and `marquee skew check` print names, versions, reasons and URIs that
come from elsewhere (the payload logs, an S3 prefix given with --store)
as text, not rich markup: before, a "[x]" in them vanished from the output and a "[/x]" ended
the command in a rich MarkupError traceback after the verdict had been published."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO

from marquee.store import open_store
from monitoring.drift.scenarios import payload_table, write_bundle, write_payload_logs

HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}


def _cli(args: list[str], home: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(home), "COLUMNS": "250", **env}
    return subprocess.run([sys.executable, "-m", "marquee.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_drift_check_prints_an_s3_prefix_with_brackets(tmp_path: Path, s3_env: str
                                                        ) -> None:
    bundle = write_bundle(tmp_path / "bundle", n_reference=2_000)
    uri = "s3://drift-markup/team[/x]"  # "[/x]": a closing tag that matches nothing
    store = open_store(uri, s3_env, create_bucket=True)
    write_payload_logs(store, payload_table(2_000, 3, "none", start_ts=HOUR))
    out = _cli(["drift", "check", "--bundle", str(bundle), "--store", uri,
                "--until", "2025-03-01T01:00:00Z", "--since", "1h", "--evidently", "never",
                "--no-embeddings", "--pushgateway", ""], tmp_path / "home",
               {**CREDS, "MARQUEE_S3_ENDPOINT_URL": s3_env})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr
    assert "no drift: 0/20 features drifted" in out.stdout
    assert "summary_json: s3://drift-markup/team[/x]/monitoring/drift/movie-recommender/" \
        in out.stdout
