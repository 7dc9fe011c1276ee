"""A bad dataset fails the run before training, with an error that names the problem, and
nothing is registered."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Dataset

from components.factory import build_components
from marquee.settings import Settings
from recsys.data.errors import DataValidationError
from recsys.data.synth import generate

C = build_components()


def write_tables(root: Path, inter: pd.DataFrame | None = None) -> Path:
    ds = generate(60, 40, 600, seed=3)
    root.mkdir(parents=True, exist_ok=True)
    (inter if inter is not None else ds.interactions).to_csv(root / "interactions.csv", index=False)
    ds.users.to_csv(root / "users.csv", index=False)
    ds.items.to_csv(root / "items.csv", index=False)
    return root


def good_interactions() -> pd.DataFrame:
    return generate(60, 40, 600, seed=3).interactions


def _missing_column(df):
    return df.drop(columns=["timestamp"])


def _negative_id(df):
    df = df.astype({"user_id": "int64"})
    df.loc[df.index[:3], "user_id"] = -5
    return df


def _non_integer_id(df):
    df = df.astype({"item_id": "object"})
    df.loc[df.index[:2], "item_id"] = "movie-42"
    return df


def _bad_timestamp(df):
    df = df.astype({"timestamp": "object"})
    df.loc[df.index[:4], "timestamp"] = "next tuesday"
    return df


def _duplicates(df):
    return pd.concat([df, df.iloc[:7]], ignore_index=True)


CASES = {
    "missing column": (_missing_column, ["timestamp", "missing"]),
    "negative id": (_negative_id, ["user_id", "3"]),
    "non-integer id": (_non_integer_id, ["item_id", "movie-42"]),
    "unparseable timestamp": (_bad_timestamp, ["timestamp", "next tuesday"]),
    "duplicate rows": (_duplicates, ["duplicate", "7"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset_fails_ingest_naming_the_problem(tmp_path, home, case):
    corrupt, words = CASES[case]
    src = write_tables(tmp_path / "src", corrupt(good_interactions()))
    out = Dataset(name="dataset", uri=str(tmp_path / "out"))
    with pytest.raises(DataValidationError) as err:
        C.ingest.python_func(source=str(src), dataset=out)
    message = str(err.value)
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    assert not Path(out.path).exists() or not any(Path(out.path).iterdir())


def test_empty_file_is_named(tmp_path, home):
    src = write_tables(tmp_path / "src")
    (src / "interactions.csv").write_text("")
    with pytest.raises(DataValidationError, match="interactions"):
        C.ingest.python_func(source=str(src), dataset=Dataset(name="d", uri=str(tmp_path / "o")))


def test_good_directory_is_ingested(tmp_path, home):
    src = write_tables(tmp_path / "src")
    out = Dataset(name="dataset", uri=str(tmp_path / "out"))
    C.ingest.python_func(source=str(src), dataset=out)
    assert out.metadata["interactions"] == 600


def test_bad_dataset_stops_the_pipeline_and_registers_nothing(tmp_path, home, capfd,
                                                              monkeypatch):
    from marquee.errors import PipelineRunError
    from marquee.registry import Registry
    from pipelines.run import run_local

    src = write_tables(tmp_path / "src", _duplicates(good_interactions()))
    settings = Settings()
    scratch = tmp_path / "tmp"  # this run's $TMPDIR, so other runs' files do not count
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    with pytest.raises(PipelineRunError, match="failed in step 'ingest': .*DataValidationError: "
                       ".*data validation failed") as err:
        run_local(settings, {"source": str(src)})
    assert err.value.step == "ingest"
    logs = capfd.readouterr()
    assert "duplicate" in (logs.out + logs.err).lower()
    assert Registry(settings.resolved_registry_uri).list_versions() == []
    assert not list((settings.home / "store").rglob("bundle.json"))
    # the steps' temporary files went with the run (kfp's step wrapper left a tmp.* each)
    assert not list(scratch.iterdir())
    assert os.environ["TMPDIR"] == str(scratch)
