"""``marquee.errors.redact_uri`` masks a URI's password wherever a message quotes it. A
password typed with a raw "@" (not percent-encoded) was cut at its first "@", and the rest of
it printed (``http://u:***@ss@host``)."""

from __future__ import annotations

import pytest

from marquee.errors import redact_uri


@pytest.mark.parametrize("text,expected", [
    ("http://u:p@ss@host:5000/x", "http://u:***@host:5000/x"),
    ("postgresql://mlflow:secret@db/mlflow", "postgresql://mlflow:***@db/mlflow"),
    ("to http://u:pw@h/x and s3://bucket/k@v", "to http://u:***@h/x and s3://bucket/k@v"),
    ("http://host/a:b@c", "http://host/a:b@c"),  # no user info: left alone
])
def test_the_whole_password_is_masked_and_nothing_else(text: str, expected: str) -> None:
    assert redact_uri(text) == expected
