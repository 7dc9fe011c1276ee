"""``marquee demo`` with ``MARQUEE_REGISTRY_URI`` and ``MARQUEE_STORE_URI`` set: every process
of the loop uses them, as its first training does (helper D, session 21).

Before: the loop's processes got no ``MARQUEE_*`` but their home, so the model server looked
the version trained (for minutes) into the given registry up in the home's ("no version 1")
and the demo failed at its second step. Here the production version is registered beforehand
(so nothing trains); the run ends at the latest at its drift check on a 2-second window, and
the trigger's source is one its pipeline refuses, so that no retraining runs for minutes.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_support import build_bundle  # noqa: E402

pytestmark = pytest.mark.integration


def test_the_loops_model_server_reads_the_registry_the_demo_was_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from marquee.registry import Registry
    from marquee.settings import Settings
    from monitoring.loop.demo import DemoOptions, run_demo
    from recsys.data.synth import generate

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARQUEE_REGISTRY_URI", f"sqlite:///{tmp_path / 'elsewhere' / 'reg.db'}")
    monkeypatch.setenv("MARQUEE_STORE_URI", str(tmp_path / "elsewhere" / "store"))
    settings = Settings()

    bundle = build_bundle(tmp_path / "bundles")
    ds = generate(300, 400, 15_000, seed=1)  # the bundle's users and items
    run = settings.runs_dir / "run-1"
    (run / "ingest" / "x").mkdir(parents=True)
    (run / "split" / "test").mkdir(parents=True)
    ds.users.to_parquet(run / "ingest" / "x" / "users.parquet")
    ds.interactions.tail(500).to_parquet(run / "split" / "test" / "interactions.parquet")
    registry = Registry(settings.resolved_registry_uri, settings.model_name)
    version = registry.register(bundle.as_uri(), {"ndcg_at_10": 0.0},
                                tags={"pipeline_run_id": "run-1"})
    registry.set_alias("production", version)
    occupation = str(ds.users["occupation"].iloc[0])

    out = io.StringIO()
    record, _, _ = run_demo(settings, DemoOptions(
        source="no-such-source", alerting="direct", drift_window_seconds=2,
        segment={"occupation": [occupation]}, timeout_seconds=120),
        Console(file=out, width=200))

    text = out.getvalue()
    assert record.baseline_version == str(version), text
    assert "exited with 1 before it was ready" not in text, text[-3000:]
    server = next(s for s in record.services if s["name"] == f"server-v{version}")
    assert server["ready_seconds"] > 0, text[-3000:]  # it loaded the version and answered
    assert not (tmp_path / "home" / "registry.db").exists()  # the home's was never used
