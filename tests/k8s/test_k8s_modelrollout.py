"""The ModelRollout CRD: examples validate against the chart's own schema, broken ones are
rejected, and the schema says what serving/rollout/spec.py says (docs/CONTRACTS.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

import chartlib as c

EXAMPLES = sorted((c.K8S / "examples").glob("rollout-*.yaml"))
BROKEN = sorted((c.K8S / "examples" / "broken").glob("rollout-*.yaml"))
# what each broken example must be rejected for (the field and the reason)
BROKEN_BECAUSE = {
    "rollout-canary-weight-150.yaml": "spec/steps/1/weight: 150 is greater than the maximum of 100",
    "rollout-canary-weight-0.yaml": "spec/steps/0/weight: 0 is less than the minimum of 1",
    "rollout-unknown-strategy.yaml": "spec/strategy: 'bluegreen' is not one of",
    "rollout-unknown-field.yaml": "'stepz' was unexpected",
}


def test_there_is_an_example_per_strategy() -> None:
    strategies = {doc["spec"]["strategy"] for _, doc in c.load_yaml_docs(EXAMPLES)}
    assert strategies == {"shadow", "canary", "ab", "interleave"}
    assert {p.name for p in EXAMPLES} == {f"rollout-{s}.yaml" for s in strategies}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_chart_crd(path: Path) -> None:
    (_, doc), = c.load_yaml_docs([path])
    assert doc["apiVersion"] == "marquee.dev/v1alpha1" and doc["kind"] == "ModelRollout"
    assert c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc) == []


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_example_is_rejected_by_the_chart_crd(path: Path) -> None:
    (_, doc), = c.load_yaml_docs([path])
    errs = c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc)
    assert any(BROKEN_BECAUSE[path.name] in e for e in errs), errs


def test_broken_examples_cover_weight_and_strategy() -> None:
    assert {p.name for p in BROKEN} == set(BROKEN_BECAUSE)


def test_crd_shape() -> None:
    crd = c.chart_crd()
    assert crd["metadata"]["name"] == "modelrollouts.marquee.dev"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["spec"]["group"] == "marquee.dev" and crd["spec"]["scope"] == "Namespaced"
    (v,) = crd["spec"]["versions"]
    assert v["name"] == "v1alpha1" and v["served"] and v["storage"]
    assert v["subresources"] == {"status": {}}
    columns = {col["name"]: col["jsonPath"] for col in v["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Strategy"] == ".spec.strategy"
    assert columns["Step"] == ".status.step"
    assert columns["Weight"] == ".status.weights.candidate"


def test_status_schema_accepts_what_the_controller_writes() -> None:
    from serving.rollout.status import Decision, Outcome, Phase, RolloutStatus, utcnow

    status = RolloutStatus(phase=Phase.PROGRESSING, step=1, failed_checks=0, decisions=[
        Decision(time=utcnow(), phase=Phase.PROGRESSING, step=1, outcome=Outcome.SUCCESSFUL,
                 reason="started", statistics={"baselineVersion": "1", "candidateVersion": "2",
                                               "aliasesBefore": {"previous": None}})])
    (_, doc), = c.load_yaml_docs([c.K8S / "examples" / "rollout-canary.yaml"])
    doc["status"] = status.to_dict()
    assert c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc) == []
    doc["status"]["phase"] = "Exploding"
    assert c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc)


# --- the CRD and the Python spec agree ----------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES + BROKEN, ids=lambda p: p.name)
def test_python_spec_agrees_with_the_crd(path: Path) -> None:
    from serving.rollout.spec import SpecError, parse_rollout

    (_, doc), = c.load_yaml_docs([path])
    crd_ok = not c.errors(jsonschema.Draft7Validator, c.modelrollout_schema(), doc)
    try:
        parse_rollout(doc, str(path))
        spec_ok = True
    except SpecError:
        spec_ok = False
    assert crd_ok == spec_ok == (path.parent.name != "broken")


def _crd_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    props = schema.get("properties") or schema.get("items", {}).get("properties") or {}
    for name, sub in props.items():
        out.add(prefix + name)
        out |= _crd_fields(sub, f"{prefix}{name}.")
    return out


def _model_fields(model: Any, prefix: str = "") -> set[str]:
    import typing

    from pydantic import BaseModel

    out: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.alias or name
        out.add(prefix + alias)
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    out |= _model_fields(inner, f"{prefix}{alias}.")
    return out


def test_crd_spec_fields_are_exactly_the_python_spec_fields() -> None:
    from serving.rollout.spec import RolloutSpec

    crd = c.modelrollout_schema()["properties"]["spec"]
    assert _crd_fields(crd) == _model_fields(RolloutSpec)


def test_crd_status_fields_cover_the_python_status() -> None:
    from serving.rollout.status import RolloutStatus

    crd = c.modelrollout_schema()["properties"]["status"]
    assert _model_fields(RolloutStatus) <= _crd_fields(crd)
