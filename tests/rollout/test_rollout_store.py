"""Status persistence: the local file backend and the Kubernetes backend (against a fake)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.rollout.spec import load_rollout, parse_rollout
from serving.rollout.status import Phase, RolloutStatus, Weights
from serving.rollout.store import (
    ControllerBusy,
    FileStatusStore,
    KubernetesStatusStore,
    RolloutExists,
    RolloutNotFound,
    StatusStore,
)
from tests.conftest import wait_until
from tests.rollout.fake_kube import FakeKubeAPI

ROLLOUT = {
    "apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
    "metadata": {"name": "recommender-v2"},
    "spec": {"baseline": {"alias": "production"}, "candidate": {"version": "2"},
             "strategy": "canary", "steps": [{"weight": 5}, {"weight": 100}],
             "analysis": {"failureLimit": 2, "metrics": [{"name": "errorRate", "max": 0.05}]}},
}


def _status() -> RolloutStatus:
    return RolloutStatus(phase=Phase.PROGRESSING, step=1, failed_checks=1,
                         weights=Weights(baseline=95, candidate=5), message="step 1")


def _exercise(store: StatusStore) -> None:
    rollout = parse_rollout(ROLLOUT)
    store.create(rollout)
    with pytest.raises(RolloutExists):
        store.create(rollout)
    got = store.get("recommender-v2")
    assert got.rollout.spec == rollout.spec and got.status == RolloutStatus()
    assert store.list() == ["recommender-v2"]
    store.save_status("recommender-v2", _status())
    assert store.get("recommender-v2").status == _status()
    assert store.pending_command("recommender-v2") is None
    store.request("recommender-v2", "promote")
    assert store.pending_command("recommender-v2") == "promote"
    store.clear_command("recommender-v2", "abort")  # only the command that was seen is cleared
    assert store.pending_command("recommender-v2") == "promote"
    store.clear_command("recommender-v2", "promote")
    assert store.pending_command("recommender-v2") is None
    with pytest.raises(RolloutNotFound):
        store.get("nope")
    with pytest.raises(RolloutNotFound):
        store.save_status("nope", _status())


def test_file_store(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    assert isinstance(store, StatusStore)
    _exercise(store)
    raw = json.loads((tmp_path / "recommender-v2" / "status.json").read_text())
    assert raw["phase"] == "Progressing" and raw["failedChecks"] == 1
    assert not list((tmp_path / "recommender-v2").glob(".*.tmp"))  # atomic writes leave none
    assert load_rollout(tmp_path / "recommender-v2" / "rollout.yaml").spec.strategy == "canary"


def test_controller_lock_is_exclusive_and_released_when_the_holder_dies(tmp_path: Path) -> None:
    store = FileStatusStore(tmp_path)
    store.create(parse_rollout(ROLLOUT))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from serving.rollout.store import FileStatusStore
        with FileStatusStore({str(tmp_path)!r}).lock("recommender-v2"):
            print("locked", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ControllerBusy):
            with store.lock("recommender-v2"):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=10)

    def free() -> bool:
        with store.lock("recommender-v2"):
            return True
    wait_until(free, timeout=10, what="lock released")


@pytest.fixture()
def fake_kube() -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI().start()
    yield api
    api.stop()


def test_kubernetes_store_against_a_fake_api_server(fake_kube: FakeKubeAPI) -> None:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = fake_kube.url
    api = client.CustomObjectsApi(client.ApiClient(cfg))
    store = KubernetesStatusStore(api, namespace="marquee")
    assert isinstance(store, StatusStore)
    _exercise(store)
    obj = fake_kube.objects[("modelrollouts", "marquee", "recommender-v2")]
    assert obj["status"]["weights"] == {"baseline": 95, "candidate": 5}
    assert obj["spec"]["strategy"] == "canary"
    # The status went through the status subresource, as merge patches.
    status_patches = [r for r in fake_kube.requests
                      if r[0] == "PATCH" and r[1].endswith("/recommender-v2/status")]
    assert status_patches and all(r[2] == "application/merge-patch+json" for r in status_patches)
    # A kubectl-style annotation is a command too.
    api.patch_namespaced_custom_object(
        "marquee.dev", "v1alpha1", "marquee", "modelrollouts", "recommender-v2",
        {"metadata": {"annotations": {"marquee.dev/command": "abort"}}})
    assert store.pending_command("recommender-v2") == "abort"


def test_a_rollout_file_between_document_separators_loads(tmp_path: Path) -> None:
    """A generated manifest often carries ``---`` before and after its one document: it was
    refused as "not valid YAML: expected a single document". Two documents are refused by
    name."""
    from serving.rollout.spec import SpecError

    example = (Path(__file__).resolve().parents[2] / "k8s" / "examples"
               / "rollout-interleave.yaml").read_text()
    framed = tmp_path / "framed.yaml"
    framed.write_text(f"---\n{example}\n---\n")
    assert load_rollout(framed).spec.strategy == "interleave"
    two = tmp_path / "two.yaml"
    two.write_text(f"{example}\n---\n{example}")
    with pytest.raises(SpecError, match="2 YAML documents; give one ModelRollout per file"):
        load_rollout(two)
