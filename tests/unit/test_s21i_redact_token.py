"""An http(s) URI may carry a token as its user name (``https://ghp_…@host``,
``http://TOKEN@mlflow:5000``): ``redact_uri`` masked only a password after a ":", so such a
token was printed whole in every message that quotes the URI (``marquee registry list``
against an unreachable MLflow printed it twice). The bare user name of another scheme
(``postgresql://mlflow@db``) is a user name, not a secret, and is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port

from marquee.errors import redact_uri

TOKEN = "tok123-s21i"


@pytest.mark.parametrize("text,expected", [
    (f"https://ghp_{TOKEN}@github.com/o/r.git", "https://***@github.com/o/r.git"),
    (f"to http://{TOKEN}@127.0.0.1:5000/api failed", "to http://***@127.0.0.1:5000/api failed"),
    (f"HTTPS://{TOKEN}@host", "HTTPS://***@host"),
    (f"git+https://{TOKEN}@github.com/o/r", "git+https://***@github.com/o/r"),
    (f"http://{TOKEN}@a@host:5/x", "http://***@host:5/x"),  # a raw "@" in it: masked whole
    ("http://u:p@host/x", "http://u:***@host/x"),  # user and password: as before
    ("postgresql://mlflow@db/mlflow", "postgresql://mlflow@db/mlflow"),  # a user name: kept
    ("mysql://root@db/x", "mysql://root@db/x"),
    ("http://host/a@b and mail me@x.org", "http://host/a@b and mail me@x.org"),  # no user info
    ("https://host?q=a@b", "https://host?q=a@b"),
])
def test_a_token_as_an_http_user_name_is_masked(text: str, expected: str) -> None:
    assert redact_uri(text) == expected


def test_registry_list_never_prints_a_token_in_the_registry_uri(tmp_path: Path) -> None:
    uri = f"http://{TOKEN}@127.0.0.1:{free_port()}"  # nothing listens there
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MARQUEE_")}
    out = subprocess.run([str(Path(sys.executable).parent / "marquee"), "registry", "list"],
                         env={**clean, "MARQUEE_HOME": str(tmp_path), "COLUMNS": "200",
                              "MARQUEE_REGISTRY_URI": uri},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "listing versions failed on http://***@127.0.0.1:" in out.stdout + out.stderr
    assert TOKEN not in out.stdout + out.stderr
