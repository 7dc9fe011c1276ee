"""The retrain webhook (a real `marquee trigger` on 127.0.0.1) and the Authorization scheme.

HTTP auth schemes are case-insensitive, and Alertmanager sends ``authorization.type`` as it
is written in its configuration: with ``type: bearer`` every notification was a 401, which
Alertmanager does not retry, so no alert ever started a run. The token itself is still
compared exactly, and another scheme carrying the token is refused."""

from __future__ import annotations

import httpx
import pytest
from test_retrain_webhook import TOKEN, notification, running_trigger

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("retrain-webhook")]


def test_the_bearer_scheme_is_case_insensitive_the_token_is_not(tmp_path) -> None:
    with running_trigger(tmp_path, 3600, 0.1) as trig:
        def post(authorization: str) -> httpx.Response:
            return httpx.post(f"{trig.url}/webhook", headers={"Authorization": authorization},
                              json=notification("f00da001", "movie-recommender"), timeout=10)

        for refused in (f"bearer {TOKEN.upper()}", f"Basic {TOKEN}", f"bearer{TOKEN}",
                        "bearer", f"Bearer {TOKEN}x"):
            r = post(refused)
            assert r.status_code == 401, (refused, r.text)
            assert r.json()["message"] == "wrong bearer token"
        assert trig.runs() == []
        lower = post(f"bearer {TOKEN}")
        assert lower.status_code == 200, lower.text
        assert [d["decision"] for d in lower.json()["decisions"]] == ["started"]
        upper = post(f"BEARER {TOKEN}")
        assert upper.status_code == 200, upper.text
        assert [d["decision"] for d in upper.json()["decisions"]] == ["duplicate"]
        assert TOKEN not in (tmp_path / "trigger.log").read_text()
