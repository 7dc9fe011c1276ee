"""A version number beyond what the registry can hold is simply not there (session 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.commands.registry import app
from marquee.errors import VersionNotFoundError
from marquee.registry import Registry

NAME = "movie-recommender"
HUGE = "99999999999999999999999"
JUST_OVER = str(2**63)  # one past SQLite's INTEGER


@pytest.fixture(scope="module")
def registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlflow") / "registry.db"
    registry = Registry(f"sqlite:///{path}")
    registry.register(f"s3://bucket/marquee/models/{NAME}/b1", {"ndcg_at_10": 0.2})
    registry.set_alias("candidate", 1)
    return path


@pytest.fixture()
def cli_env(registry_db: Path, tmp_path: Path) -> dict[str, str]:
    return {"MARQUEE_REGISTRY_URI": f"sqlite:///{registry_db}",
            "MARQUEE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


@pytest.mark.parametrize("number", [HUGE, JUST_OVER])
@pytest.mark.parametrize("args", [["show"], ["alias", "candidate"], ["alias", "previous"]])
def test_cli_names_a_huge_version_as_missing(cli_env: dict[str, str], args: list[str],
                                             number: str) -> None:
    result = CliRunner().invoke(app, [*args, number], env=cli_env)
    assert result.exit_code == 1, result.output
    assert f"has no version {number}" in result.output
    assert "SQLite" not in result.output and "Traceback" not in result.output
    registry = Registry(cli_env["MARQUEE_REGISTRY_URI"])
    assert registry.get_alias("candidate").version == 1  # type: ignore[union-attr]
    assert registry.get_alias("previous") is None  # nothing moved


def test_resolve_of_a_huge_version_is_version_not_found(registry_db: Path) -> None:
    registry = Registry(f"sqlite:///{registry_db}")
    for ref in (HUGE, int(HUGE), f"models:/{NAME}/{HUGE}"):
        with pytest.raises(VersionNotFoundError, match=f"no version {HUGE}"):
            registry.resolve(ref)
    assert registry.resolve("1").endswith("/b1")
