"""A ModelRollout means the same to ``serving/rollout/spec.py`` (``marquee rollout start -f``,
the controller) and to the chart's CRD (``kubectl apply``): what one refuses the other refuses.

Before, spec.py coerced what the CRD refuses (``weight: "25"``, ``autoPromote: "true"``, a bare
``candidate: 2``, an integer ``version``), took any registry alias (the CRD: production,
candidate, previous), any number of steps and metrics (the CRD: 100 and 20) and a weight of 0
outside a canary. A file that ``rollout start -f`` ran could not be applied in a cluster.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.k8s import chartlib as c

REPO = Path(__file__).resolve().parents[2]


def _crd_errors(doc: dict[str, Any]) -> list[str]:
    return c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc)


def _canary() -> dict[str, Any]:
    (_, doc), = c.load_yaml_docs([c.K8S / "examples" / "rollout-canary.yaml"])
    return copy.deepcopy(doc)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``spec.<path>`` (dots; digits index lists) in a copy of the canary example."""
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = spec
        for p in parents:
            node = node[p]
        node[last] = value
    return edit


# (what is set in the canary example's spec, the field both must name)
BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("weight-as-string", _set("steps.0.weight", "25"), "steps.0.weight"),
    ("weight-as-float", _set("steps.0.weight", 25.5), "steps.0.weight"),
    ("weight-as-bool", _set("steps.0.weight", True), "steps.0.weight"),
    ("pause-seconds-as-string", _set("steps.2.pause.seconds", "60"), "steps.2.pause.seconds"),
    ("auto-promote-as-string", _set("autoPromote", "true"), "autoPromote"),
    ("auto-promote-as-int", _set("autoPromote", 1), "autoPromote"),
    ("interval-as-string", _set("intervalSeconds", "30"), "intervalSeconds"),
    ("interval-as-bool", _set("intervalSeconds", True), "intervalSeconds"),
    ("failure-limit-as-string", _set("analysis.failureLimit", "2"), "analysis.failureLimit"),
    ("metric-max-as-string", _set("analysis.metrics.0.max", "0.05"), "analysis.metrics.0.max"),
    ("max-duration-as-string", _set("limits.maxDurationSeconds", "86400"),
     "limits.maxDurationSeconds"),
    ("shadow-min-requests-as-string", _set("shadow", {"minRequests": "500"}),
     "shadow.minRequests"),
    ("ab-weight-as-bool", _set("ab", {"candidateWeight": True}), "ab.candidateWeight"),
    ("sample-rate-as-string", _set("shadow", {"sampleRate": "0.5"}), "shadow.sampleRate"),
    ("salt-as-int", _set("stickinessSalt", 123), "stickinessSalt"),
    ("candidate-bare-int", _set("candidate", 2), "candidate"),
    ("candidate-bare-string", _set("candidate", "2"), "candidate"),
    ("candidate-version-int", _set("candidate", {"version": 2}), "candidate.version"),
    ("baseline-bare-int", _set("baseline", 1), "baseline"),
    ("alias-not-in-enum", _set("baseline", {"alias": "staging"}), "baseline.alias"),
    ("101-steps", _set("steps", [{"weight": 10}] * 100 + [{"weight": 100}]), "steps"),
    ("21-metrics", _set("analysis.metrics", [{"name": "errorRate", "max": 0.05}] * 21),
     "analysis.metrics"),
    ("weight-0-outside-a-canary",
     lambda s: s.update(strategy="ab", steps=[{"weight": 0}]), "steps.0.weight"),
]


@pytest.mark.parametrize("edit,field", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_spec_the_crd_refuses_is_refused_by_spec_py_naming_the_field(
        edit: Callable[[dict[str, Any]], None], field: str) -> None:
    from serving.rollout.spec import SpecError, parse_rollout

    doc = _canary()
    edit(doc["spec"])
    crd = _crd_errors(doc)
    assert any(e.startswith(f"spec/{field.replace('.', '/')}:") for e in crd), crd
    with pytest.raises(SpecError) as refused:
        parse_rollout(doc, "bad.yaml")
    said = str(refused.value)
    # by its path, or as a check across fields words it (``steps[0].weight: 0 sends…``)
    bracketed = re.sub(r"\.(\d+)", r"[\1]", field)
    assert re.search(rf"spec\.{re.escape(field)}(\.|:)", said) or f"{bracketed}:" in said, said


def test_spec_py_refusals_are_the_cli_errors(tmp_path: Path) -> None:
    """``marquee rollout start -f`` is where a person meets spec.py: the quoted number is
    refused there, by field and value, before anything is created."""
    from typer.testing import CliRunner

    from serving.rollout.cli import app

    doc = _canary()
    doc["spec"]["steps"][0]["weight"] = "25"
    path = tmp_path / "quoted.yaml"
    path.write_text(yaml.safe_dump(doc))
    r = CliRunner().invoke(app, ["start", "-f", str(path), "--detach"],
                           env={"MARQUEE_HOME": str(tmp_path)})
    assert r.exit_code == 1, r.output
    assert "spec.steps.0.weight" in r.output and "'25'" in r.output, r.output
    assert not (tmp_path / "rollouts" / "recommender-v2").exists()


def _doc_examples() -> list[tuple[str, dict[str, Any]]]:
    """Every ModelRollout in the repository's examples and in the Markdown docs' YAML blocks
    (the status of the contract's block is a sketch of what the controller writes: dropped)."""
    found = [(str(p.relative_to(REPO)), d)
             for p, d in c.load_yaml_docs(sorted((c.K8S / "examples").glob("rollout-*.yaml")))]
    for md in sorted([*(REPO / "docs").glob("*.md"), *REPO.glob("*.md"),
                      *(REPO / "k8s").glob("*.md"), *(REPO / "serving").rglob("*.md")]):
        for block in re.findall(r"```yaml\n(.*?)```", md.read_text(), flags=re.S):
            for doc in yaml.safe_load_all(block):
                if isinstance(doc, dict) and doc.get("kind") == "ModelRollout":
                    doc.pop("status", None)
                    found.append((str(md.relative_to(REPO)), doc))
    return found


def test_every_documented_rollout_is_accepted_by_both() -> None:
    from serving.rollout.spec import parse_rollout

    examples = _doc_examples()
    assert {w for w, _ in examples} >= {"docs/CONTRACTS.md", "k8s/examples/rollout-canary.yaml"}
    for where, doc in examples:
        assert _crd_errors(doc) == [], where
        parse_rollout(doc, where)


def test_the_cli_flags_still_build_a_valid_rollout(tmp_path: Path) -> None:
    """``--candidate 2`` and ``--baseline 1`` are strings the CLI turns into the canonical
    ``{version: "2"}``: the stricter spec does not refuse them."""
    from typer.testing import CliRunner

    from serving.rollout.cli import app
    from serving.rollout.store import FileStatusStore

    r = CliRunner().invoke(app, ["start", "--strategy", "ab", "--candidate", "2",
                                 "--baseline", "1", "--detach"],
                           env={"MARQUEE_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    spec = FileStatusStore(tmp_path / "rollouts").get("ab-v2").rollout.spec
    assert (spec.candidate.version, spec.baseline.version) == ("2", "1")
    doc = yaml.safe_load((tmp_path / "rollouts" / "ab-v2" / "rollout.yaml").read_text())
    assert _crd_errors(doc) == []


def test_the_candidate_flag_takes_an_alias_as_the_baseline_flag_does(tmp_path: Path) -> None:
    """``--candidate candidate`` was sent as ``{version: "candidate"}``, which the version
    pattern refuses: the registry's own alias for the next version could not be named."""
    from typer.testing import CliRunner

    from serving.rollout.cli import app
    from serving.rollout.store import FileStatusStore

    r = CliRunner().invoke(app, ["start", "--strategy", "shadow", "--candidate", "@candidate",
                                 "--detach"], env={"MARQUEE_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    spec = FileStatusStore(tmp_path / "rollouts").get("shadow-vcandidate").rollout.spec
    assert (spec.candidate.alias, spec.baseline.alias) == ("candidate", "production")
