"""Text from the data cannot run as markup in the drift check's Evidently page (helper M,
session 22).

Evidently 0.7 embeds its report's data as JSON in an inline ``<script>`` and does not escape
``</script>`` in it: a feature named ``</script><img src=x onerror=...>`` (a column of the
payload log and the reference) ended the script early and the ``<img onerror>`` after it ran
in the browser of whoever opened ``evidently.html`` from the store. Now the data's ``<``, ``>``
and ``&`` are JSON escapes (``\\u003c``...), which the page's script reads as the same text.

Through ``marquee drift check`` in its own process (``--evidently always``): the page it
publishes is parsed as a browser's tokenizer would start it, and no element, attribute or
comment may come from the hostile feature name or category.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO

from marquee.store import LocalStore
from monitoring.drift.config import DEFAULT_CONFIG
from monitoring.drift.scenarios import feature_frame, payload_table

HOUR = 1_740_787_200  # 2025-03-01T00:00:00Z
EVIL_NAME = "</script><img src=x onerror=alert(1)><!--<script>"
EVIL_CATEGORY = "</script><svg onload=alert(2)>"


class _Page(HTMLParser):
    """The elements, attributes and comments a browser would build (script bodies are text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.comments: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def _inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Reference, window and config with one more categorical feature: its name and one of
    its categories hostile; it drifts (the category is new in the window)."""
    n = 400
    ref = feature_frame(n, 1)
    ref[EVIL_NAME] = ["a", "b"] * (n // 2)
    ref.to_parquet(tmp_path / "reference.parquet", index=False)
    window = payload_table(n, 4, start_ts=HOUR)
    window = window.append_column(f"f_{EVIL_NAME}", pa.array([EVIL_CATEGORY, "a"] * (n // 2)))
    pq.write_table(window, tmp_path / "window.parquet")
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg["features"][EVIL_NAME] = {"kind": "categorical"}
    cfg["report"]["sample_rows"] = 100  # a small Evidently page
    (tmp_path / "drift.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "reference.parquet", tmp_path / "window.parquet", tmp_path / "drift.yaml"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The drift check's published report.html and evidently.html, by output name."""
    tmp = tmp_path_factory.mktemp("s22m")
    reference, window, config = _inputs(tmp)
    env = {"PATH": "/usr/bin:/bin", "MARQUEE_HOME": str(tmp / "home"), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "marquee.cli", "drift", "check", "--bundle", "none",
         "--reference", str(reference), "--window", str(window), "--config", str(config),
         "--store", str(tmp / "store"), "--until", "2025-03-01T01:00:00Z", "--since", "1h",
         "--evidently", "always", "--no-embeddings", "--pushgateway", "", "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 3), out.stdout + out.stderr
    summary = json.loads(out.stdout)
    assert EVIL_NAME in summary["drifted_features"], summary["drifted_features"]
    assert "evidently_html" in summary["outputs"], out.stderr  # published, not refused
    store = LocalStore(tmp / "store")
    return {name: store.get_bytes(summary["outputs"][name].split("/store/", 1)[1]).decode()
            for name in ("report_html", "evidently_html")}


@pytest.fixture(scope="module")
def evidently_page(pages: dict[str, str]) -> str:
    return pages["evidently_html"]


def test_the_check_s_own_page_shows_them_as_text(pages: dict[str, str]) -> None:
    """report.html (the page on-call opens first) escapes them too (it did before)."""
    page = _Page()
    page.feed(pages["report_html"])
    page.close()
    assert not [t for t, _ in page.tags if t in ("img", "script")], page.tags
    assert not [a for _, attrs in page.tags for a, _ in attrs if a.startswith("on")]
    assert not page.comments and EVIL_NAME not in pages["report_html"]


def test_a_hostile_feature_name_and_category_stay_data_in_evidentlys_page(
        evidently_page: str) -> None:
    page = _Page()
    page.feed(evidently_page)
    page.close()
    # nothing the data said became an element, an attribute or a comment
    assert not [t for t, _ in page.tags if t in ("img", "svg")], page.tags
    assert not [a for _, attrs in page.tags for a, _ in attrs if a.startswith("on")]
    assert not [c for c in page.comments if "script" in c or "alert" in c], page.comments
    assert EVIL_NAME not in evidently_page and EVIL_CATEGORY not in evidently_page
    assert "</script><img" not in evidently_page and "<!--<script>" not in evidently_page
    # Evidently's own page is whole: its data script, the library and the call that draws it
    assert [t for t, _ in page.tags].count("script") == 4
    assert "drawDashboard" in page.scripts[-1]


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_the_data_still_says_the_hostile_text_as_text(evidently_page: str) -> None:
    """The escapes are JSON's: what the page's script reads is the original name and
    category, so the report shows them as they are (as text)."""
    lines = re.findall(r"^\s*var (?:additional_graphs_)?metric_[0-9a-f]{32} = (.*);$",
                       evidently_page, re.MULTILINE)
    assert len(lines) == 2, "Evidently's two data lines"
    assert not [line for line in lines if "<" in line or ">" in line]
    texts = [s for line in lines for s in _strings(json.loads(line))]
    assert any(EVIL_NAME in s for s in texts)
    assert EVIL_CATEGORY in texts


def test_a_page_whose_data_is_not_where_expected_is_refused() -> None:
    """A newer Evidently that lays its data out otherwise is not published unchecked (the
    drift check then publishes its verdict without the Evidently page)."""
    from monitoring.drift.report import inert_evidently_data

    with pytest.raises(RuntimeError, match="two lines `var metric_<id> = <JSON>;`"):
        inert_evidently_data("<script>\nwindow.data = {\"x\": \"</script><img>\"};\n</script>")


# --- the demo's page (monitoring/loop/report.py) --------------------------------------------
DEMO_EVIL = "\"'><img src=x onerror=alert(3)></p><!--"


def test_the_demo_page_escapes_the_traffic_line_and_drift_counts(tmp_path: Path) -> None:
    """The traffic line (requests, errors, latencies, phase labels and times) and the drift
    check's row counts went into the page unescaped, unlike every other value of the record
    (a report.json is data; a hand-edited or foreign one re-rendered is text, not markup)."""
    from marquee.settings import Settings
    from monitoring.loop.report import write_report

    summary = {"drift_detected": False, "drifted_features": [], "features": [],
               "prediction": [], "drift_share": 0.0, "drift_share_threshold": 0.2,
               "window": {"rows": DEMO_EVIL}, "reference_rows": DEMO_EVIL}
    rec = {"stamp": "s22m", "outcome": "Succeeded", "steps": [],
           "drift": {"normal": summary},
           "traffic": {"requests": DEMO_EVIL, "errors": DEMO_EVIL, "p50_ms": DEMO_EVIL,
                       "p99_ms": DEMO_EVIL,
                       "phases": [{"phase": DEMO_EVIL, "at": DEMO_EVIL}]}}
    path, _ = write_report(Settings(home=tmp_path / "home"), rec, tmp_path / "out")
    text = path.read_text()
    page = _Page()
    page.feed(text)
    page.close()
    assert not [t for t, _ in page.tags if t == "img"], page.tags
    assert not [a for _, attrs in page.tags for a, _ in attrs if a.startswith("on")]
    assert not page.comments and DEMO_EVIL not in text
    assert "Replayed &quot;&#x27;&gt;&lt;img" in text  # shown, as text
    # 8 values shown in the two lines, 8 more in the whole record (report.json) at the end
    assert text.count("&lt;img src=x onerror=alert(3)&gt;") == 16
