"""``marquee data`` sub-commands through Typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from marquee.commands.data import app
from recsys.data import read_dataset
from recsys.data.validate import check_dataset

runner = CliRunner()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _atomic_source(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t1\t5\t874965758\n2\t1\t3\t876893171\n2\t2\t4\t876893200\n")
    (directory / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\tT8H1N\n")
    (directory / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction\n")
    return directory


def test_fetch_from_a_local_source_writes_parquet_under_the_data_dir(home: Path,
                                                                      tmp_path: Path) -> None:
    source = _atomic_source(tmp_path / "src")
    result = runner.invoke(app, ["fetch", "movielens-100k", "--source", str(source)])
    assert result.exit_code == 0, result.output
    assert "interactions" in result.output and "3" in result.output
    written = list((home / "data" / "datasets" / "movielens-100k").iterdir())
    assert len(written) == 1
    ds = read_dataset(written[0])
    assert written[0].name == ds.fingerprint()
    assert ds.counts() == {"interactions": 3, "users": 2, "items": 2}
    assert "zip_code" not in ds.users.columns
    assert (home / "data" / "movielens-100k" / "movielens-100k" / "users.parquet").is_file()


def test_a_fetched_copy_feeds_the_pipelines_ingest_step(home: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``marquee data fetch movielens-100k --source PATH`` is the README's offline route:
    the pipeline's ingest step (source ``movielens-100k``) must find that copy and not go to
    PyPI (before, the command cached under data/raw and the step looked in data/movielens-100k)."""
    from kfp.dsl import Dataset

    from components import ingest
    from recsys.data import fetch

    source = _atomic_source(tmp_path / "src")
    assert runner.invoke(app, ["fetch", "movielens-100k", "--source", str(source)]).exit_code == 0

    def no_download(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise AssertionError("the ingest step downloaded MovieLens-100k again")

    monkeypatch.setattr(fetch.PipWheelDownloader, "__call__", no_download)
    out = Dataset(name="dataset", uri=str(tmp_path / "ingested"))
    ingest.ingest(source="movielens-100k", dataset=out, home=str(home))
    assert out.metadata["interactions"] == 3 and out.metadata["users"] == 2


def test_fetch_with_a_bad_source_fails_with_a_message(home: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["fetch", "movielens-100k", "--source", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no MovieLens-100k files" in result.output


def test_synth_then_validate(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(app, ["synth", "--users", "300", "--items", "80", "--events", "4000",
                                 "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ds = read_dataset(out)
    assert ds.counts() == {"interactions": 4000, "users": 300, "items": 80}
    assert check_dataset(ds) == []
    assert ds.fingerprint()[:20] in result.output
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_exits_1_and_names_column_and_rule(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    assert runner.invoke(app, ["synth", "--users", "50", "--items", "20", "--events", "500",
                               "--out", str(out)]).exit_code == 0
    ds = read_dataset(out)
    inter = ds.interactions.astype({"timestamp": "string"})
    inter.loc[0, "timestamp"] = "tomorrow-ish"
    inter.loc[1, "user_id"] = -4
    (out / "interactions.parquet").unlink()
    inter.to_csv(out / "interactions.csv", index=False)
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 1
    assert "interactions.timestamp: parseable timestamp" in result.output
    assert "'tomorrow-ish'" in result.output
    assert "interactions.user_id: positive id" in result.output
