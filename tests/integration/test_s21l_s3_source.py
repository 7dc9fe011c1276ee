"""The training pipeline's ``source`` may be ``s3://bucket/prefix``: the ingest step downloads the
dataset's table files under the prefix and reads them exactly as a local dataset directory
(same checks, same findings). Against moto in server mode on 127.0.0.1, through the real
ingest component (``.python_func``) and one whole ``marquee pipeline run``."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Dataset

from components.factory import build_components
from marquee.errors import InvalidArgumentError
from marquee.registry import Registry
from marquee.settings import Settings
from recsys.data.errors import DataSourceError, DataValidationError
from recsys.data.synth import generate
from tests.conftest import free_port
from tests.pipeline.conftest import TINY_CONFIG

pytestmark = pytest.mark.integration
C = build_components()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv("MARQUEE_HOME", str(path))
    for var in ("MARQUEE_STORE_URI", "MARQUEE_REGISTRY_URI", "MARQUEE_S3_ENDPOINT_URL",
                "MARQUEE_S3_SOURCE_MAX_BYTES"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture()
def bucket(s3_env: str):
    """A fresh bucket on the moto endpoint; (name, boto3 client)."""
    import boto3

    name = f"events-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=s3_env)
    client.create_bucket(Bucket=name)
    return name, client


def _bytes(frame: pd.DataFrame, kind: str) -> bytes:
    if kind == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    return frame.to_csv(index=False, sep="\t" if kind == "tsv" else ",").encode()


def _put_layout(layout: dict[str, bytes], client, bucket: str, prefix: str,
                local: Path | None = None) -> None:
    """The same files in the bucket under ``prefix`` and, when given, in ``local``."""
    for rel, data in layout.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=data)
        if local is not None:
            (local / rel).parent.mkdir(parents=True, exist_ok=True)
            (local / rel).write_bytes(data)


def _ingest(tmp_path: Path, source: str, **kw):
    out = Dataset(name="d", uri=str(tmp_path / f"out-{uuid.uuid4().hex[:6]}"))
    C.ingest.python_func(source=source, dataset=out, home=str(tmp_path / "home"), **kw)
    return out


class _Trap:
    """Anything unpickled during the test trips this (and creates ``marker``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_ingest_reads_an_s3_prefix_as_the_same_directory(tmp_path, home, bucket, s3_env,
                                                         monkeypatch) -> None:
    name, client = bucket
    ds = generate(60, 40, 800, seed=3)
    bad = ds.interactions.assign(rating=9.0)  # read from anywhere but the prefix: refused
    marker = tmp_path / "unpickled"
    layout = {"Interactions.CSV": _bytes(ds.interactions, "csv"),  # names ignore case
              "users.parquet": _bytes(ds.users, "parquet"),
              "items.tsv": _bytes(ds.items, "tsv"),
              "interactions.pkl": pickle.dumps(_Trap(marker)),  # never read, never unpickled
              "README.txt": b"events of 2026-11-24\n"}
    local = tmp_path / "local"
    _put_layout(layout, client, name, "events/2026-11-24", local)
    for decoy in ("events/2026-11-24-old", "events", "events/2026-11-24/archive",
                  "events/2026-11-24/.."):  # a sibling, the parent, a child, a literal '..'
        client.put_object(Bucket=name, Key=f"{decoy}/interactions.csv", Body=_bytes(bad, "csv"))

    def refuse(*a, **k):
        raise AssertionError("something was unpickled")
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)

    expected = _ingest(tmp_path, str(local)).metadata["fingerprint"]
    assert expected == ds.fingerprint()
    for source in (f"s3://{name}/events/2026-11-24/", f"s3://{name}/events/2026-11-24"):
        out = _ingest(tmp_path, source, s3_endpoint_url=s3_env)
        assert out.metadata["source"] == source
        assert out.metadata["fingerprint"] == expected
        assert (out.metadata["interactions"], out.metadata["users"],
                out.metadata["items"]) == (800, 60, 40)
        assert sorted(p.name for p in Path(out.path).iterdir()) == [
            "interactions.parquet", "items.parquet", "users.parquet"]
    # the step's MARQUEE_S3_ENDPOINT_URL when the parameter is empty
    monkeypatch.setenv("MARQUEE_S3_ENDPOINT_URL", s3_env)
    assert _ingest(tmp_path, f"s3://{name}/events/2026-11-24").metadata[
        "fingerprint"] == expected
    assert not marker.exists()


def test_bad_data_under_s3_gets_the_findings_of_the_same_directory(tmp_path, home, bucket,
                                                                   s3_env) -> None:
    name, client = bucket
    ds = generate(40, 30, 300, seed=4)
    inter = ds.interactions.astype({"rating": "float64"})
    inter.loc[3, "rating"] = 7.5
    part = _bytes(ds.items, "parquet")
    layout = {"interactions.csv": _bytes(inter, "csv"),
              "users.csv.gz": gzip.compress(_bytes(ds.users, "csv")),  # "decompress it"
              "items.parquet/part-00000.parquet": part}  # Spark's directory of part files
    local = tmp_path / "local"
    _put_layout(layout, client, name, "drop/1", local)
    with pytest.raises(DataValidationError) as here:
        _ingest(tmp_path, str(local))
    uri = f"s3://{name}/drop/1"
    with pytest.raises(DataValidationError) as there:
        _ingest(tmp_path, uri, s3_endpoint_url=s3_env)
    assert str(there.value) == str(here.value).replace(str(local), uri)
    rules = {(f.table, f.rule) for f in there.value.report}
    assert {("interactions", "rating range"), ("users", "missing file"),
            ("items", "missing file")} <= rules
    text = str(there.value)
    assert "decompress it" in text and "a directory (Spark writes" in text
    assert "marquee-s3-source-" not in text  # the temporary copy is not what the user named


def test_s3_source_failures_are_one_line_naming_the_source(tmp_path, home, bucket, s3_env,
                                                           monkeypatch) -> None:
    name, client = bucket
    ds = generate(30, 20, 200, seed=5)
    _put_layout({"interactions.parquet": _bytes(ds.interactions, "parquet"),
                 "users.parquet": _bytes(ds.users, "parquet"),
                 "items.parquet": _bytes(ds.items, "parquet")}, client, name, "ok")
    cases = [
        (f"s3://no-such-{name}/x", s3_env, f"bucket 'no-such-{name}' does not exist"),
        (f"s3://{name}/nothing-here/", s3_env, "no objects under it"),
        (f"s3://{name}/ok", f"http://127.0.0.1:{free_port()}", "cannot reach the S3 endpoint"),
    ]
    for source, endpoint, why in cases:
        with pytest.raises(DataSourceError) as exc:
            _ingest(tmp_path, source, s3_endpoint_url=endpoint)
        message = str(exc.value)
        assert message.startswith(f"source {source!r}: ") and why in message, message
        assert "\n" not in message
    # credentials the endpoint does not know: moto checks them once told to
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(DataSourceError, match=rf"^source 's3://{name}/ok': access denied "
                       r"\(InvalidAccessKeyId\)") as exc:
        _ingest(tmp_path, f"s3://{name}/ok", s3_endpoint_url=s3_env)
    assert "wrong-secret" not in str(exc.value) and "\n" not in str(exc.value)
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # bounded: the bytes the step downloads (its environment), the objects a prefix holds
    monkeypatch.setenv("MARQUEE_S3_SOURCE_MAX_BYTES", "1000")
    with pytest.raises(DataSourceError, match=r"more than the 1000 the ingest step downloads "
                       r"\(raise MARQUEE_S3_SOURCE_MAX_BYTES"):
        _ingest(tmp_path, f"s3://{name}/ok", s3_endpoint_url=s3_env)
    monkeypatch.setenv("MARQUEE_S3_SOURCE_MAX_BYTES", "2GB")
    with pytest.raises(InvalidArgumentError, match="MARQUEE_S3_SOURCE_MAX_BYTES='2GB'"):
        _ingest(tmp_path, f"s3://{name}/ok", s3_endpoint_url=s3_env)
    monkeypatch.delenv("MARQUEE_S3_SOURCE_MAX_BYTES")
    from components.common import read_s3_source

    with pytest.raises(DataSourceError, match=rf"s3://{name}/ok holds more than 2 objects"):
        read_s3_source(f"s3://{name}/ok", s3_env, max_objects=2)
    assert len(read_s3_source(f"s3://{name}/ok", s3_env).interactions) == 200


@pytest.mark.parametrize(("source", "why"), [
    ("s3://", "needs a bucket"),
    ("s3:///events", "needs a bucket"),
    ("s3://AKIAXXXX:hunter2@bucket/events", "must not carry credentials"),
    ("s3://bucket/events/../secrets", "the prefix 'events/../secrets'"),
    ("s3://bucket//events", "the prefix '/events'"),
    ("s3://bucket/events?versionId=3", "query or fragment"),
])
def test_malformed_s3_sources_fail_ingest_naming_the_source(tmp_path, home, source,
                                                           why) -> None:
    with pytest.raises(InvalidArgumentError, match=r"^source=") as exc:
        _ingest(tmp_path, source)
    assert why in str(exc.value)
    assert "hunter2" not in str(exc.value) and "AKIAXXXX" not in str(exc.value)


def test_pipeline_run_trains_on_an_s3_source_and_registers_a_version(tmp_path, bucket,
                                                                     s3_env) -> None:
    name, client = bucket
    ds = generate(300, 200, 8000, seed=7)
    _put_layout({"interactions.parquet": _bytes(ds.interactions, "parquet"),
                 "users.csv": _bytes(ds.users, "csv"),
                 "items.parquet": _bytes(ds.items, "parquet")}, client, name, "events/2026-11-24")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    env.update(MARQUEE_HOME=str(home), MARQUEE_S3_ENDPOINT_URL=s3_env, COLUMNS="250",
               OMP_NUM_THREADS="1")
    source = f"s3://{name}/events/2026-11-24/"
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "pipeline", "run",
                          "--source", source, "--config-json", json.dumps(TINY_CONFIG)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    versions = Registry(Settings(home=home).resolved_registry_uri,
                        "movie-recommender").list_versions()
    assert len(versions) == 1
    assert versions[0].tags["data_fingerprint"] == ds.fingerprint()
    recorded = [json.loads(p.read_text()) for p in (home / "runs").rglob("executor_output.json")
                if p.parent.name == "ingest"]
    assert [a["metadata"]["source"] for r in recorded for arts in r["artifacts"].values()
            for a in arts["artifacts"]] == [source]

    # a missing bucket: the run fails in ingest, one line naming the source, nothing trained
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "pipeline", "run",
                          "--source", f"s3://no-such-{name}/events"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        "error: pipeline 'marquee-training' failed in step 'ingest': "
        f"recsys.data.errors.DataSourceError: source 's3://no-such-{name}/events': bucket "
        f"'no-such-{name}' does not exist at {s3_env}")
    assert "Traceback" not in out.stderr
    assert len(Registry(Settings(home=home).resolved_registry_uri,
                        "movie-recommender").list_versions()) == 1
