"""The compiled pipeline describes itself in the Kubeflow UI: the pipeline, each run parameter
and each step's inputs and outputs carry a description, taken by kfp from the docstrings."""

from __future__ import annotations

import inspect

import docstring_parser
import pytest
import yaml
from kfp.dsl.types.type_annotations import is_artifact_wrapped_in_Output

from components.factory import FUNCTIONS, build_components
from pipelines.run import compile_pipeline
from pipelines.training import build_pipeline

SINGLE_OUTPUT = "Output"  # kfp's name for a function's return value


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> dict:
    path = compile_pipeline(tmp_path_factory.mktemp("ir") / "pipeline.yaml")
    return yaml.safe_load(path.read_text())


def _described(section: dict | None) -> dict[str, str]:
    """{name: description} of a parameters/artifacts section of the IR."""
    return {name: (value.get("description") or "").strip()
            for name, value in (section or {}).items()}


def _undescribed(definitions: dict | None) -> list[str]:
    definitions = definitions or {}
    return sorted(f"{kind}.{name}" for kind in ("parameters", "artifacts")
                  for name, text in _described(definitions.get(kind)).items() if not text)


def test_the_pipeline_and_every_run_parameter_are_described(spec):
    assert spec["pipelineInfo"]["description"].strip()
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert len(params) == 14
    assert _undescribed(spec["root"]["inputDefinitions"]) == []


def test_every_component_input_and_output_is_described(spec):
    ir = {name.removeprefix("comp-"): comp for name, comp in spec["components"].items()}
    assert set(FUNCTIONS) <= set(ir)
    for name in FUNCTIONS:
        assert _undescribed(ir[name].get("inputDefinitions")) == [], name
        assert _undescribed(ir[name].get("outputDefinitions")) == [], name


def test_every_component_has_a_description():
    # the IR's ComponentSpec has no description field: it lives on the kfp component
    components = build_components()
    for name in FUNCTIONS:
        assert (getattr(components, name).component_spec.description or "").strip(), name


def _doc_names(func) -> tuple[list[str], list[str]]:
    """The names in the ``Args:`` and ``Returns:`` sections of ``func``'s docstring, read as
    kfp reads them (it parses ``Returns:`` as one more ``Args:`` section)."""
    doc = inspect.getdoc(func) or ""
    args = [p.arg_name for p in docstring_parser.parse(doc).params]
    _, found, tail = doc.partition("Returns:\n")
    section = docstring_parser.parse("Returns.\n\nArgs:\n" + tail)  # a summary line first
    returns = [p.arg_name for p in section.params] if found else []
    return args, returns


def _signature_names(func) -> tuple[list[str], list[str]]:
    signature = inspect.signature(func)
    inputs = [n for n, p in signature.parameters.items()
              if not is_artifact_wrapped_in_Output(p.annotation)]
    outputs = [n for n, p in signature.parameters.items()
               if is_artifact_wrapped_in_Output(p.annotation)]
    if signature.return_annotation not in (None, inspect.Signature.empty):
        outputs.append(SINGLE_OUTPUT)
    return inputs, outputs


@pytest.mark.parametrize("name", ["training_pipeline", *FUNCTIONS])
def test_docstring_names_match_the_signature(name):
    func = (build_pipeline().pipeline_func if name == "training_pipeline"
            else getattr(build_components(), name).python_func)
    args, returns = _doc_names(func)
    inputs, outputs = _signature_names(func)
    assert args == inputs, f"{name}: Args: {args} but the inputs are {inputs}"
    assert returns == outputs, f"{name}: Returns: {returns} but the outputs are {outputs}"
