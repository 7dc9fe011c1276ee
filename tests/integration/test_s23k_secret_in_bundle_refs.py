"""A credential written into a bundle reference stays out of what ``marquee`` prints
(session 23).

``marquee drift check --bundle s3://KEY:SECRET@bucket/…`` (and a token alone,
``s3://TOKEN@bucket/…``) was refused, but the error line began ``bundle='<the reference as
given>'``, secret and all; and ``redact_uri`` kept an object-store URI's bare user info, which
for s3:// is never a user name but a key id or a token. The real ``marquee`` in its own
process, no network (the store refuses the URI before any request).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee.errors import redact_uri
from tests.integration.test_s20v_secret_leaks import marquee

SECRET = "S3CRET-s23k"


@pytest.mark.parametrize("ref", [f"s3://AKIAEXAMPLE:{SECRET}@bucket/models/rec/1",
                                 f"s3://{SECRET}@bucket/models/rec/1"],
                         ids=["key-and-secret", "token"])
def test_a_drift_check_of_a_bundle_ref_with_credentials_prints_none(tmp_path: Path,
                                                                      ref: str) -> None:
    out = marquee(tmp_path, "drift", "check", "--bundle", ref)
    said = out.stdout + out.stderr
    assert out.returncode != 0, said
    assert SECRET not in said, said
    assert "bundle='s3://***@bucket/models/rec/1'" in said, said


@pytest.mark.parametrize(("uri", "shown"), [
    (f"s3://{SECRET}@bucket/k", "s3://***@bucket/k"),
    (f"s3a://AKIA:{SECRET}@bucket/k", "s3a://***@bucket/k"),
    (f"gs://{SECRET}@bucket/k", "gs://***@bucket/k"),
    ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),  # a user name, kept
    (f"http://ops:{SECRET}@h:1/x", "http://ops:***@h:1/x"),
])
def test_an_object_store_uris_user_info_is_masked_whole(uri: str, shown: str) -> None:
    assert redact_uri(f"reading {uri} failed") == f"reading {shown} failed"
