"""Registry over MLflow on SQLite, and the ``marquee registry`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.commands.registry import app
from marquee.errors import (
    AliasNotFoundError,
    InvalidArgumentError,
    InvalidReferenceError,
    VersionNotFoundError,
)
from marquee.registry import Registry

NAME = "movie-recommender"


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema created once (migrations take ~2 s)."""
    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    Registry(f"sqlite:///{path}").list_versions()
    return path


@pytest.fixture()
def db_uri(template_db: Path, tmp_path: Path) -> str:
    shutil.copy(template_db, tmp_path / "registry.db")
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture()
def registry(db_uri: str) -> Registry:
    return Registry(db_uri)


def _register(registry: Registry, n: int, ndcg: float = 0.2, **tags: str) -> int:
    return registry.register(f"s3://bucket/marquee/models/{NAME}/b{n}", {"ndcg_at_10": ndcg},
                             {"data_fingerprint": f"fp{n}", **tags})


def test_register_records_source_and_contract_tags(registry: Registry) -> None:
    uri = f"s3://bucket/marquee/models/{NAME}/b1"
    version = registry.register(
        uri, {"ndcg_at_10": 0.3125, "recall_at_50": 0.5},
        {"data_fingerprint": "abc", "params": json.dumps({"dim": 32}), "code_revision": "deadbeef",
         "pipeline_run_id": "run-7", "gate.decision": "promoted-first",
         "gate.candidate_ndcg_at_10": "0.3125", "best_params": json.dumps({"lr": 0.01})})
    assert version == 1
    mv = registry.client.get_model_version(NAME, "1")
    assert mv.source == uri  # not an MLflow 3 models:/m-… logged-model source
    assert mv.tags == {
        "bundle_uri": uri, "metric.ndcg_at_10": "0.3125", "metric.recall_at_50": "0.5",
        "data_fingerprint": "abc", "params": '{"dim": 32}', "code_revision": "deadbeef",
        "pipeline_run_id": "run-7", "gate.decision": "promoted-first",
        "gate.candidate_ndcg_at_10": "0.3125", "best_params": '{"lr": 0.01}'}
    info = registry.get_version(1)
    assert info.bundle_uri == uri and info.metrics == {"ndcg_at_10": 0.3125, "recall_at_50": 0.5}
    assert info.gate_decision == "promoted-first" and info.aliases == []
    assert _register(registry, 2) == 2


@pytest.mark.parametrize(("tags", "field"), [
    ({"data-fingerprint": "x"}, "data-fingerprint"),
    ({"params": "not json"}, "params"),
    ({"gate.decision": "maybe"}, "gate.decision"),
    ({"metric.ndcg_at_10": "high"}, "metric.ndcg_at_10"),
])
def test_register_refuses_tags_outside_the_contract(registry: Registry, tags: dict[str, str],
                                                    field: str) -> None:
    with pytest.raises(InvalidArgumentError, match=field.replace(".", r"\.")) as info:
        registry.register("s3://b/models/m/1", {}, tags)
    assert info.value.status_code == 400
    assert registry.list_versions() == []


def test_register_refuses_non_finite_metrics_and_non_uris(registry: Registry) -> None:
    with pytest.raises(InvalidArgumentError, match="ndcg_at_10"):
        registry.register("s3://b/models/m/1", {"ndcg_at_10": float("inf")})
    with pytest.raises(InvalidArgumentError, match="bundle_uri"):
        registry.register("models/m/1", {})
    assert registry.list_versions() == []


def test_aliases_and_resolve(registry: Registry) -> None:
    assert registry.get_alias("production") is None  # nothing registered yet
    v1, v2 = _register(registry, 1), _register(registry, 2)
    registry.set_alias("candidate", v2)
    registry.set_alias("production", v1)
    assert registry.get_alias("candidate").version == v2  # type: ignore[union-attr]
    assert registry.get_version(v1).aliases == ["production"]
    assert registry.resolve("production").endswith("/b1")
    assert registry.resolve("candidate").endswith("/b2")
    assert registry.resolve(2).endswith("/b2") and registry.resolve("1").endswith("/b1")
    # a version typed or pasted with spaces around it is that version, as an alias is
    assert registry.resolve(" 2 ").endswith("/b2") and registry.resolve_version("1\n") == v1
    assert registry.resolve(f"models:/{NAME}@candidate").endswith("/b2")
    assert registry.resolve(f"models:/{NAME}/1").endswith("/b1")
    assert registry.resolve("s3://elsewhere/bundle") == "s3://elsewhere/bundle"
    assert registry.resolve("/srv/bundles/7") == "/srv/bundles/7"
    registry.delete_alias("candidate")
    registry.delete_alias("candidate")  # idempotent
    assert registry.get_alias("candidate") is None
    with pytest.raises(AliasNotFoundError, match="candidate") as info:
        registry.resolve("candidate")
    assert info.value.status_code == 404
    with pytest.raises(VersionNotFoundError, match="no version 9"):
        registry.resolve(9)
    with pytest.raises(InvalidReferenceError):
        registry.resolve("Not An Alias!")
    with pytest.raises(InvalidReferenceError, match="other-model"):
        registry.resolve("models:/other-model/1")


def test_unknown_versions_are_clear_errors(registry: Registry) -> None:
    _register(registry, 1)
    with pytest.raises(VersionNotFoundError, match="no version 5"):
        registry.get_version(5)
    with pytest.raises(VersionNotFoundError, match="no version 5"):
        registry.set_alias("candidate", 5)
    with pytest.raises(InvalidReferenceError):
        registry.get_version("latest")
    assert registry.get_alias("candidate") is None


def test_promote_moves_production_and_previous(registry: Registry) -> None:
    v1, v2, v3 = (_register(registry, n) for n in (1, 2, 3))
    first = registry.promote(v1)
    assert (first.production, first.previous) == (v1, None)
    assert registry.get_alias("previous") is None
    registry.set_alias("candidate", v2)
    second = registry.promote(v2)
    assert (second.production, second.previous) == (v2, v1)
    assert registry.resolve("production").endswith("/b2")
    assert registry.resolve("previous").endswith("/b1")
    assert registry.get_alias("candidate") is None  # the candidate became production
    assert registry.promote(v2).production == v2  # promoting production again changes nothing
    assert registry.get_alias("previous").version == v1  # type: ignore[union-attr]
    with pytest.raises(VersionNotFoundError):
        registry.promote(42)
    assert {i.version: i.aliases for i in registry.list_versions()} == {
        v1: ["previous"], v2: ["production"], v3: []}


def test_set_tags_adds_gate_decision_but_never_moves_the_bundle(registry: Registry) -> None:
    v = _register(registry, 1)
    registry.set_tags(v, {"gate.decision": "candidate", "gate.production_ndcg_at_10": "0.2"})
    assert registry.get_version(v).tags["gate.decision"] == "candidate"
    with pytest.raises(InvalidArgumentError, match="bundle_uri"):
        registry.set_tags(v, {"bundle_uri": "s3://other/bundle"})
    assert registry.resolve(v).endswith("/b1")


# The CLI --------------------------------------------------------------------------------
@pytest.fixture()
def cli_env(db_uri: str, tmp_path: Path) -> dict[str, str]:
    return {"MARQUEE_REGISTRY_URI": db_uri, "MARQUEE_HOME": str(tmp_path / "home"),
            "COLUMNS": "200"}


def test_cli_list_shows_versions_aliases_metrics_and_decisions(
        registry: Registry, cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    empty = runner.invoke(app, ["list"], env=cli_env)
    assert empty.exit_code == 0 and "no versions" in empty.output
    _register(registry, 1, ndcg=0.25, **{"gate.decision": "promoted-first"})
    _register(registry, 2, ndcg=0.3, **{"gate.decision": "candidate"})
    registry.promote(1)
    registry.set_alias("candidate", 2)
    result = runner.invoke(app, ["list"], env=cli_env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "0.2500" in line or "0.3000" in line]
    assert len(lines) == 2
    assert "2" in lines[0] and "candidate" in lines[0] and "0.3000" in lines[0]  # newest first
    assert "production" in lines[1] and "promoted-first" in lines[1] and "0.2500" in lines[1]


def test_cli_show_prints_every_tag(registry: Registry, cli_env: dict[str, str]) -> None:
    _register(registry, 1, code_revision="cafe1234", pipeline_run_id="run-42")
    registry.set_alias("candidate", 1)
    result = CliRunner().invoke(app, ["show", "candidate"], env=cli_env)
    assert result.exit_code == 0, result.output
    for text in ("bundle_uri", "/b1", "data_fingerprint", "fp1", "code_revision", "cafe1234",
                 "pipeline_run_id", "run-42", "metric.ndcg_at_10", "candidate"):
        assert text in result.output
    missing = CliRunner().invoke(app, ["show", "7"], env=cli_env)
    assert missing.exit_code == 1 and "no version 7" in missing.output


def test_cli_alias_sets_aliases_and_guards_production(registry: Registry,
                                                      cli_env: dict[str, str]) -> None:
    _register(registry, 1)
    runner = CliRunner()
    ok = runner.invoke(app, ["alias", "candidate", "1"], env=cli_env)
    assert ok.exit_code == 0, ok.output
    assert registry.get_alias("candidate").version == 1  # type: ignore[union-attr]
    refused = runner.invoke(app, ["alias", "production", "1"], env=cli_env)
    assert refused.exit_code == 2 and "rollout controller" in refused.output
    assert registry.get_alias("production") is None
    forced = runner.invoke(app, ["alias", "production", "1", "--force"], env=cli_env)
    assert forced.exit_code == 0 and registry.get_alias("production") is not None
    unknown = runner.invoke(app, ["alias", "candidate", "3"], env=cli_env)
    assert unknown.exit_code == 1 and "no version 3" in unknown.output


def test_cli_unalias_removes_an_alias_and_guards_production(registry: Registry,
                                                            cli_env: dict[str, str]) -> None:
    """A stale ``candidate`` could be moved but never removed from the CLI."""
    _register(registry, 1)
    _register(registry, 2)
    registry.promote(1)
    registry.set_alias("candidate", 2)
    runner = CliRunner()
    ok = runner.invoke(app, ["unalias", "candidate"], env=cli_env)
    assert ok.exit_code == 0, ok.output
    assert "candidate removed (was version 2)" in ok.output
    assert registry.get_alias("candidate") is None
    assert [v.version for v in registry.list_versions()] == [1, 2]  # the version stays
    again = runner.invoke(app, ["unalias", "candidate"], env=cli_env)
    assert again.exit_code == 0 and "was not set" in again.output
    refused = runner.invoke(app, ["unalias", "production"], env=cli_env)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert registry.get_alias("production").version == 1  # type: ignore[union-attr]
    forced = runner.invoke(app, ["unalias", "production", "--force"], env=cli_env)
    assert forced.exit_code == 0 and registry.get_alias("production") is None
    bad = runner.invoke(app, ["unalias", "Not An Alias"], env=cli_env)
    assert bad.exit_code != 0 and "alias" in bad.output and "Traceback" not in bad.output
