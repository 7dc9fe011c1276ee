"""``marquee rollout report NAME``: a rollout as one self-contained HTML page (helper R,
session 21). Before, the command did not exist (``No such command 'report'``).

The statuses are real: the controller ticks real file-store rollouts against scripted router
windows (the router itself runs in test_rollout_e2e.py), as test_s16g_cli.py does; then the
CLI writes the page and the test reads it as a browser would (text with entities decoded)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from serving.router.schema import InterleaveWindow, ShadowWindow, VariantWindow, WindowStats
from serving.rollout.cli import app
from serving.rollout.controller import Controller
from serving.rollout.sources import SourceError
from serving.rollout.spec import parse_rollout
from serving.rollout.status import Phase, RolloutStatus
from serving.rollout.store import FileStatusStore
from tests.rollout.test_rollout_controller import Clock, DictRegistry

EVIL = "<script>alert('x')</script>"


def _doc(name: str, **spec: Any) -> dict[str, Any]:
    body = {"modelName": f"model-{name}", "baseline": {"alias": "production"},
            "candidate": {"version": "2"}, "intervalSeconds": 1, **spec}
    return {"apiVersion": "marquee.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": name}, "spec": body}


class Windows:
    """Per tick, what the router reports: a list of windows (the last one repeats); a
    string is a metrics source that is down, with that message."""

    def __init__(self, *windows: Any) -> None:
        self.windows, self.calls = list(windows), 0

    def window(self, since: float, until: float) -> WindowStats:
        w = self.windows[min(self.calls, len(self.windows) - 1)]
        self.calls += 1
        if isinstance(w, str):
            raise SourceError(w)
        return WindowStats(since=since, until=until, **w)


def _canary(errors: int) -> dict[str, Any]:
    return {"variants": {
        "baseline": VariantWindow(requests=900, errors=0, latency_p99_ms=10.0),
        "candidate": VariantWindow(requests=100, errors=errors, latency_p99_ms=10.0)}}


AB_WIN = {"variants": {
    "baseline": VariantWindow(requests=2000, latency_p99_ms=10.0, exposures=2000,
                              clicked_exposures=200, users=1000),
    "candidate": VariantWindow(requests=2000, latency_p99_ms=10.0, exposures=2000,
                               clicked_exposures=400, users=1003)}}
IL_WIN = {"variants": {"baseline": VariantWindow(requests=500, latency_p99_ms=10.0),
                       "candidate": VariantWindow(requests=500, latency_p99_ms=10.0)},
          "interleave": InterleaveWindow(impressions=500, baseline_wins=90, candidate_wins=260,
                                         ties=150)}
SH_WIN = {"shadow": ShadowWindow(mirrored=240, errors=1, latency_p99_ms=12.5,
                                 baseline_latency_p99_ms=10.0, topk_overlap_mean=0.4213,
                                 rbo_mean=0.5117, kendall_tau_mean=0.25)}


def _run(store: FileStatusStore, name: str, source: Windows, ticks: int) -> RolloutStatus:
    c = Controller(store, name, source, registry=DictRegistry(production="1"), clock=Clock())
    for _ in range(ticks):
        status = c.tick()
    return status


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MARQUEE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def store(home: Path) -> FileStatusStore:
    return FileStatusStore(home / "rollouts")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _page(name: str, *args: str) -> tuple[str, str]:
    """Run ``marquee rollout report NAME ARGS``; the page's markup and its text."""
    r = CliRunner().invoke(app, ["report", name, *args])
    assert r.exit_code == 0, r.output
    path = Path(args[args.index("-o") + 1]) if "-o" in args else Path(f"rollout-{name}.html")
    assert path.is_file() and f"wrote {path}" in r.output, r.output
    page = path.read_text(encoding="utf-8")
    return page, _check_document(page)


def _check_document(page: str) -> str:
    """One self-contained HTML document with an inline SVG; its text, entities decoded."""
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<html") == 1 and page.count("</body>") == 1
    assert page.count("<svg") == 1
    # nothing fetched: no script at all, no stylesheet link, no src
    assert "<script" not in page.lower() and "<link" not in page and "src=" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    parser = _Text()
    parser.feed(page)
    parser.close()
    assert "svg" in parser.tags
    return " ".join(parser.text)


def _markers(page: str) -> int:
    return page.count('<circle class="decision"')


def test_a_canary_that_rolled_back(store: FileStatusStore) -> None:
    store.create(parse_rollout(_doc("can", strategy="canary",
                                    steps=[{"weight": 10}, {"weight": 50}, {"weight": 100}],
                                    analysis={"failureLimit": 2, "minRequests": 50,
                                              "metrics": [{"name": "errorRate",
                                                           "max": 0.05}]})))
    status = _run(store, "can", Windows(_canary(0), f"prometheus down {EVIL}", _canary(20)), 5)
    assert status.phase == Phase.ROLLED_BACK
    page, text = _page("can")
    assert "RolledBack" in text and "canary" in text and "baseline 1 → candidate 2" in text
    assert _markers(page) == len(status.decisions) == 5
    for d in status.decisions:
        assert d.reason in text, d.reason
    # the statistic that decided it: the failed check's value against its threshold
    assert "errorRate 0.2 > max 0.05" in text
    row = re.search(r"<tr class=bad><td>[^<]*</td><td>RolledBack</td><td>2</td><td>errorRate"
                    r"</td><td>0\.2</td><td>≤ 0\.05</td><td>outside</td>",
                    html.unescape(page))
    assert row, "the failed check's row"
    # the step chart went up to 50% before falling back to 0
    assert 'class="final-phase"' in page
    # a reason holding markup comes out escaped, as text
    assert EVIL not in page and html.escape(EVIL) in page
    assert f"metrics unavailable: prometheus down {EVIL}" in text


def test_a_promoted_ab_test(store: FileStatusStore) -> None:
    store.create(parse_rollout(_doc("ab", strategy="ab",
                                    ab={"minSamplesPerVariant": 100})))
    status = _run(store, "ab", Windows(AB_WIN), 4)
    assert status.phase == Phase.SUCCEEDED, status.message
    page, text = _page("ab", "-o", "out/ab report.html")
    assert "Succeeded" in text and _markers(page) == len(status.decisions)
    for d in status.decisions:
        assert d.reason in text
    decided = next(d for d in status.decisions if "msprt" in d.statistics).statistics["msprt"]
    assert f"{decided['p_value']:.3g}" in text  # the always-valid p that decided it
    assert "0.1 " in text and "0.2 " in text  # CTR per side
    assert f"{decided['difference']:+.4f}" in text
    assert f"[{decided['ci_low']:+.4f}, {decided['ci_high']:+.4f}]" in text
    assert "Sample ratio" in text


def test_an_interleaving_and_its_sign_test(store: FileStatusStore) -> None:
    store.create(parse_rollout(_doc("il", strategy="interleave",
                                    interleave={"minDecisions": 100}, autoPromote=False)))
    status = _run(store, "il", Windows(IL_WIN), 3)
    assert status.phase == Phase.PAUSED, status.message  # awaiting `promote`
    page, text = _page("il")
    assert "Paused" in text and "running" in text
    assert _markers(page) == len(status.decisions)
    for d in status.decisions:
        assert d.reason in text
    st = next(d for d in status.decisions if "signTest" in d.statistics).statistics["signTest"]
    assert " 90 " in f" {text} " and " 260 " in f" {text} "  # wins per side
    assert f"{st['share_b']:.3f}" in text and f"{st['p_value']:.3g}" in text
    assert "Interleaving" in text


def test_a_shadow_shows_its_sampling_and_agreement(store: FileStatusStore) -> None:
    store.create(parse_rollout(_doc("sh", strategy="shadow", analysis={"minRequests": 50},
                                    shadow={"sampleRate": 0.25, "minRequests": 1000})))
    status = _run(store, "sh", Windows(SH_WIN), 3)
    assert status.phase == Phase.SHADOWING
    page, text = _page("sh", "-o", "sh.html")
    assert "Shadowing" in text and "shadow → canary" in text
    assert _markers(page) == len(status.decisions)
    for d in status.decisions:
        assert d.reason in text
    assert "mirrored to the candidate (shadow" in text and "25% of requests" in text
    y25 = 14 + (280 - 14 - 40) * 0.75  # the chart's 25% line: the dashed sampling line is on it
    assert f'y1="{y25:.1f}" y2="{y25:.1f}" stroke="#8e44ad"' in page
    assert "0.421" in text and "0.512" in text and "+2.5 ms" in text  # overlap, RBO, p99 delta


def test_a_rollout_with_no_decisions_yet(store: FileStatusStore) -> None:
    store.create(parse_rollout(_doc("new", strategy="canary")))
    page, text = _page("new")
    assert "Pending" in text and "no decisions yet" in text and _markers(page) == 0


def test_a_frozen_rollout_whose_spec_no_longer_parses(store: FileStatusStore,
                                                      home: Path) -> None:
    store.create(parse_rollout(_doc("fz", strategy="canary",
                                    steps=[{"weight": 10}, {"weight": 50}])))
    status = _run(store, "fz", Windows(_canary(0)), 2)
    assert status.weights.candidate == 50
    # edited in place into a spec the controller refuses (the same version on both sides)
    (home / "rollouts" / "fz" / "rollout.yaml").write_text(
        yaml.safe_dump(_doc("fz", strategy="canary", baseline={"version": "2"})))
    r = CliRunner().invoke(app, ["report", "fz", "-o", "-"])
    assert r.exit_code == 0, r.output
    text = _check_document(r.output)
    assert "refused" in text and "the same as the baseline" in text
    assert "Progressing" in text and _markers(r.output) == 2
    for d in status.decisions:
        assert d.reason in text


def test_a_missing_rollout_or_an_unwritable_output_is_one_line(
        store: FileStatusStore, home: Path) -> None:
    r = CliRunner().invoke(app, ["report", "nope"])
    assert r.exit_code == 1 and r.output.strip() == (
        "error: no rollout named 'nope' (see `marquee rollout status`)"), r.output
    assert not (home / "rollout-nope.html").exists()
    store.create(parse_rollout(_doc("ok", strategy="canary")))
    (home / "taken").mkdir()
    r = CliRunner().invoke(app, ["report", "ok", "-o", "taken"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
    assert "cannot write taken" in r.output and "Traceback" not in r.output
    assert (home / "taken").is_dir()
