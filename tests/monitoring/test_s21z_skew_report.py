"""`marquee skew check` publishes a report.html beside its summary.json (session 21, helper Z).

Before, the skew check published only ``summary.json``: the on-call engineer paged by
TrainingServingSkew had JSON to read. Now ``<prefix>/report.html`` holds the verdict, every
feature with its mismatch rate against the threshold, and each skewed feature's example
requests (served and offline values), every value from the data escaped.
"""

from __future__ import annotations

import html
import json
import re

import pyarrow as pa
import pytest
from test_skew_check import _served_logs, _skew_bundle, _skew_cli, world  # noqa: F401

from monitoring.features import CONTRACT_FEATURES

START = 1_740_787_200  # 2025-03-01T00:00:00Z
UNTIL = "2025-03-01T02:00:00Z"
EVIL = "<script>alert('skew')</script>"


@pytest.fixture(scope="module")
def checked(world: dict, tmp_path_factory) -> dict:  # noqa: F811
    """One skew check through the CLI on a window served with a time-zone bug and an
    occupation logged as markup on every request."""
    from marquee.store import LocalStore
    from monitoring.drift.scenarios import write_payload_logs

    pytest.importorskip("recsys.features")
    tmp_path = tmp_path_factory.mktemp("skew-report")
    bundle, fn = _skew_bundle(world, tmp_path)
    logs = _served_logs(world, fn, START, shift=-5 * 3600)
    logs = logs.set_column(logs.schema.get_field_index("f_occupation"), "f_occupation",
                           pa.array([EVIL] * logs.num_rows))
    store = LocalStore(tmp_path / "store")
    write_payload_logs(store, logs)

    out = _skew_cli(tmp_path, bundle, UNTIL, "--pushgateway", "")
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == 3, out.stdout + out.stderr
    summary = json.loads(out.stdout)
    return {"store": store, "summary": summary, "tmp_path": tmp_path, "bundle": bundle}


def _report(checked: dict) -> str:
    outputs = checked["summary"]["outputs"]
    assert "report_html" in outputs, outputs
    key = outputs["report_html"].split("/store/", 1)[1]
    assert checked["store"].exists(key), key
    return checked["store"].get_bytes(key).decode()


def test_json_output_lists_report_html_beside_summary_json(checked: dict) -> None:
    outputs = checked["summary"]["outputs"]
    assert set(outputs) == {"report_html", "summary_json"}
    assert outputs["report_html"].endswith("/report.html")
    assert outputs["report_html"].rsplit("/", 1)[0] == outputs["summary_json"].rsplit("/", 1)[0]
    # the published summary lists it too
    key = outputs["summary_json"].split("/store/", 1)[1]
    assert json.loads(checked["store"].get_bytes(key))["outputs"] == outputs


def test_report_is_one_self_contained_html_document(checked: dict) -> None:
    page = _report(checked)
    assert page.startswith("<!doctype html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1
    assert page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()  # no scripts, and the logged one is escaped
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert "movie-recommender" in page and "version 1" in page


def test_report_names_every_feature_and_marks_the_skewed_ones(checked: dict) -> None:
    page = _report(checked)
    skewed = set(checked["summary"]["skewed_features"])
    assert skewed == {"hour_of_day", "day_of_week", "occupation"}
    rows = re.findall(r"<tr class=(\w+)><td>([^<]*)</td>", page)
    assert sorted(name for _, name in rows) == sorted(html.escape(n)
                                                      for n in CONTRACT_FEATURES)
    assert {html.unescape(name) for cls, name in rows if cls == "skew"} == skewed
    assert [cls for cls, _ in rows][:3] == ["skew"] * 3  # worst first
    assert "SKEW" in page and "3 of 20 features skewed" in page


def test_report_shows_examples_with_served_and_offline_values(checked: dict) -> None:
    page = _report(checked)
    hour = next(f for f in checked["summary"]["features"] if f["name"] == "hour_of_day")
    ex = hour["examples"][0]
    assert (ex["offline"] - ex["served"]) % 24 == 5
    assert (f"<tr><td>{ex['request_id']}</td><td>{ex['served']!r}</td>"
            f"<td>{ex['offline']!r}</td></tr>") in page


def test_report_escapes_a_served_value_holding_script(checked: dict) -> None:
    page = _report(checked)
    occupation = next(f for f in checked["summary"]["features"] if f["name"] == "occupation")
    ex = occupation["examples"][0]
    assert ex["served"] == EVIL
    assert EVIL not in page
    assert (f"<tr><td>{ex['request_id']}</td><td>{html.escape(EVIL)}</td>"
            f"<td>{html.escape(ex['offline'])}</td></tr>") in page


def test_the_printed_outputs_name_the_report(checked: dict) -> None:
    import subprocess
    import sys

    from conftest import REPO

    tmp_path = checked["tmp_path"]
    out = subprocess.run(
        [sys.executable, "-m", "marquee.cli", "skew", "check", "--bundle",
         str(checked["bundle"]), "--store", str(tmp_path / "store"), "--since", "2h",
         "--until", UNTIL, "--pushgateway", ""],
        env={"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp_path / "home"),
             "COLUMNS": "400"},
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stdout + out.stderr
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("report_html: ")),
                None)
    assert line is not None, out.stdout
    key = line.removeprefix("report_html: ").split("/store/", 1)[1]
    assert key.endswith("/report.html") and checked["store"].exists(key)
