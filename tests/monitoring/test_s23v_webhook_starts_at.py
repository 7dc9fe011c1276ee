"""The retrain webhook (a real `marquee trigger` on 127.0.0.1) and an alert's ``startsAt``.

A time that UTC cannot hold (late on 9999-12-31 west of Greenwich, early on 0001-01-01 east
of it) made the dedup key overflow: a 500, which Alertmanager retries for ever. It is a 400
naming the field and the value, and the next good alert is decided as before. A time without
an offset is UTC, not the trigger's zone: a trigger restarted in another zone took a re-send
of the same alert for a new one and started a second run."""

from __future__ import annotations

import pytest
from test_retrain_webhook import notification, running_trigger

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("retrain-webhook")]


def _with_starts(fp: str, starts: str) -> dict:
    body = notification(fp, model="movie-recommender")
    body["alerts"][0]["startsAt"] = starts
    return body


@pytest.mark.parametrize("starts", ["9999-12-31T23:59:59-12:00",
                                    "0001-01-01T00:00:00.5+01:00"])
def test_a_starts_at_beyond_utc_is_a_400_naming_it(tmp_path, starts: str) -> None:
    with running_trigger(tmp_path, 3600, 0.1) as trig:
        bad = trig.post(_with_starts("f00d5e01", starts))
        assert bad.status_code == 400, bad.text
        message = bad.json()["message"]
        assert "alerts.0.startsAt" in message and "out of the range" in message, message
        assert starts.split("T")[0] in message, message
        assert trig.runs() == [] and trig.decisions() == []
        good = trig.post(_with_starts("f00d5e02", "2025-03-01T02:00:00Z"))
        assert good.status_code == 200, good.text
        assert [d["decision"] for d in good.json()["decisions"]] == ["started"]


def test_a_starts_at_without_offset_is_one_alert_across_zones(tmp_path, monkeypatch) -> None:
    body = _with_starts("f00d5e03", "2025-03-01T02:00:00")
    monkeypatch.setenv("TZ", "UTC")
    with running_trigger(tmp_path, 0, 0.1) as trig:
        first = trig.post(body)
        assert first.status_code == 200, first.text
        assert [d["decision"] for d in first.json()["decisions"]] == ["started"]
        run_id = first.json()["decisions"][0]["run_id"]
        trig.wait_runs_finished()
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # the trigger restarted in another zone
    with running_trigger(tmp_path, 0, 0.1) as trig:
        again = trig.post(body)  # Alertmanager's re-send (repeat_interval)
        assert again.status_code == 200, again.text
        decision = again.json()["decisions"][0]
        assert (decision["decision"], decision["run_id"]) == ("duplicate", run_id), decision
        assert len(trig.stand_in_runs()) == 1
        assert decision["starts_at"] == "2025-03-01T02:00:00Z"  # shown as the UTC it is
