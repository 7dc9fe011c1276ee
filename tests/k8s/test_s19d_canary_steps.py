"""A canary whose steps only pause is refused by the ModelRollout CRD, as the controller's spec
(serving/rollout/spec.py) refuses it. Before, `kubectl apply` took it and the controller could
never read it: the rollout stayed without a status while every tick logged a traceback."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

import chartlib as c

PAUSES = [{"pause": {"seconds": 60}}, {"pause": {}}]


def _rollout(**spec: Any) -> dict[str, Any]:
    (_, doc), = c.load_yaml_docs([c.K8S / "examples" / "rollout-canary.yaml"])
    doc = copy.deepcopy(doc)
    doc["spec"].pop("steps", None)
    doc["spec"].update(spec)
    return doc


def _verdicts(doc: dict[str, Any]) -> tuple[bool, bool]:
    from serving.rollout.spec import SpecError, parse_rollout

    schema = c.modelrollout_schema()
    crd_ok = not c.errors(jsonschema.Draft7Validator, schema, doc)
    try:
        parse_rollout(doc, "test")
        spec_ok = True
    except SpecError:
        spec_ok = False
    return crd_ok, spec_ok


@pytest.mark.parametrize("spec", [
    {"strategy": "canary", "steps": PAUSES},
    {"strategy": "shadow", "steps": PAUSES},                              # promoteTo: canary
    {"strategy": "shadow", "shadow": {"promoteTo": "canary"}, "steps": PAUSES[:1]},
], ids=["canary", "shadow-default-canary", "shadow-then-canary"])
def test_a_canary_of_pauses_only_is_refused_by_the_crd_and_the_spec(spec: dict[str, Any]) -> None:
    assert _verdicts(_rollout(**spec)) == (False, False)


@pytest.mark.parametrize("spec", [
    {"strategy": "canary"},                                               # default steps
    {"strategy": "canary", "steps": [{"pause": {}}, {"weight": 10}, PAUSES[0]]},
    {"strategy": "shadow", "shadow": {"promoteTo": "ab"}, "steps": PAUSES},  # steps unused
    {"strategy": "ab", "steps": PAUSES},
], ids=["canary-default-steps", "canary-pause-then-weight", "shadow-then-ab", "ab"])
def test_rollouts_the_spec_accepts_stay_accepted(spec: dict[str, Any]) -> None:
    assert _verdicts(_rollout(**spec)) == (True, True)
