"""Compile the training pipeline, run it locally with kfp.local, or submit it to Kubeflow."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marquee.errors import (
    InvalidArgumentError,
    MarqueeError,
    PipelineRunError,
    redact_uri,
    unwind_on_sigterm,
)
from marquee.settings import Settings
from pipelines.logs import ANSI, exception_lines
from pipelines.training import PIPELINE_NAME, build_pipeline

__all__ = ["RunResult", "compile_pipeline", "run_local", "submit", "pipeline_arguments",
           "check_arguments"]

log = logging.getLogger(__name__)

_FAILED_STEP = re.compile(r"Inner task failed: '([^']+)'")
# kfp.local.SubprocessRunner's warning about a base image without "python" in its name
_NON_PYTHON_IMAGE = r"You may be attemping to run a task that uses custom or non-Python base image"
STEP_LOG_TAIL = 400  # lines of the steps' streamed logs kept to name a failed step's cause


class _Tee(io.TextIOBase):
    """Writes through to ``out`` and keeps the last ``n`` lines, each cut to its last
    ``LINE_CHARS`` characters (kfp.local prints each step's log to ``sys.stdout``; the cause
    of a failed step is in it; a progress bar redrawn with ``\\r`` is one long line). A URI's
    password is masked: kfp.local logs each step's inputs (the registry URI among them) and
    MLflow's errors quote the URI whole."""

    LINE_CHARS = 2000

    def __init__(self, out: Any, n: int):
        self.out = out
        self.lines: deque[str] = deque(maxlen=n)
        self._partial = ""

    def write(self, text: str) -> int:
        shown = redact_uri(text)  # kfp.local writes a step's log line by line
        self.out.write(shown)
        *done, partial = (self._partial + shown).split("\n")
        self.lines.extend(line[-self.LINE_CHARS:] for line in done)
        self._partial = partial[-self.LINE_CHARS:]
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()

    def fileno(self) -> int:  # terminal-size queries (rich) see the real stream
        return self.out.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.out, "encoding", "utf-8")

    def text(self) -> str:
        return "\n".join([*self.lines, self._partial])


@dataclass
class RunResult:
    run_id: str
    version: int
    gate: str
    metrics: dict[str, float] = field(default_factory=dict)
    bundle_uri: str = ""
    seconds: float = 0.0


def compile_pipeline(path: str | Path, base_image: str | None = None) -> Path:
    """Write the pipeline IR YAML that a user uploads in the Kubeflow UI."""
    from kfp import compiler

    from marquee.settings import Settings as _S

    image = base_image or _S.model_fields["pipeline_image"].default
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image), package_path=str(out))
    return out


def pipeline_arguments(settings: Settings, params: dict[str, Any] | None = None,
                       local: bool = True) -> dict[str, Any]:
    """Pipeline parameters: the caller's, plus where the store and registry are.

    Locally the resolved paths are passed. For a Kubeflow run, the store, registry and S3
    endpoint that the submitter's settings name explicitly (``MARQUEE_STORE_URI``, …; the
    chart sets them for the retrain trigger) are passed, so the run's steps write where the
    platform reads; what is not set is left to the pods' own ``MARQUEE_*`` environment (never
    this machine's local paths, which a pod cannot reach). A URI with a password in it is
    refused: a run's parameters are shown to everyone who can see the run. Locally, a
    ``source`` directory that is not on this machine is refused too (the ingest step reads
    it here); a Kubeflow run's source is a path in the step's pod.

    The evaluation gate's tolerance and the training seed (``MARQUEE_GATE_TOLERANCE``,
    ``MARQUEE_SEED``; the chart's ``settings.gateTolerance`` and ``settings.seed``, which it
    sets for the retrain trigger) are passed too, when the pipeline has those parameters and
    the caller did not pass them: locally always, for a Kubeflow run when the submitter's
    settings name them explicitly, as for the store. Otherwise a cluster run would take the
    pipeline's seed and the step pod's own tolerance whatever the platform is configured with.

    The caller's parameters are checked first (:func:`check_arguments`), so a typo fails
    here, before any step runs, and not after ingest in a cluster."""
    args: dict[str, Any] = dict(params or {})
    known = build_pipeline().component_spec.inputs or {}
    for key in ("gate_tolerance", "seed"):
        if key in known and (local or key in settings.model_fields_set):
            args.setdefault(key, getattr(settings, key))
    if local:
        args.setdefault("store_uri", settings.resolved_store_uri)
        args.setdefault("registry_uri", settings.resolved_registry_uri)
        args.setdefault("home", str(settings.home.resolve()))
        if settings.s3_endpoint_url:
            args.setdefault("s3_endpoint_url", settings.s3_endpoint_url)
    else:
        for key in ("store_uri", "registry_uri", "s3_endpoint_url"):
            value = getattr(settings, key)
            if value and key not in args:
                args[key] = value
        for key in ("store_uri", "registry_uri", "s3_endpoint_url"):
            if isinstance(args.get(key), str) and redact_uri(args[key]) != args[key]:
                raise InvalidArgumentError(
                    key, redact_uri(args[key]), "carries a password, and a Kubeflow run's "
                    "parameters are visible to everyone who can see the run: use a URI without "
                    "credentials (the MLflow server's URL) and give the pipeline's pods their "
                    "credentials from a Secret")
    for key in ("config_json",):
        if isinstance(args.get(key), dict):
            args[key] = json.dumps(args[key])
    check_arguments(args)
    if local:  # a Kubeflow run's source is a path in the step's pod, not on this machine
        from components.common import check_local_source

        check_local_source(args.get("source", known["source"].default))
    for key, value in args.items():  # kfp refuses an int for a float parameter: 0 → 0.0
        if known[key].type == "Float" and isinstance(value, int) and not isinstance(value, bool):
            args[key] = float(value)
    return args


def check_arguments(args: dict[str, Any]) -> None:
    """Raise ``InvalidArgumentError`` for a parameter the pipeline does not have, a value
    of the wrong type for its parameter (an integer, a number or a string), a value out of
    its range (split fractions, gate tolerance, trial count, timeout, reference rows; no test
    split, or a search with no validation split to score its trials on), a
    ``source`` of an unknown form, a split mode the split step does not know, or a
    ``config_json`` that the recommender would refuse, a store, registry or S3 endpoint URI of
    no known form: what a step would refuse later, refused before any runs. The types are
    checked here (the Kubeflow UI and kfp check them for a run started there); the values
    by ``components.common.check_params``, the rules the ingest step applies again."""
    from components.common import check_params

    args = {k: json.dumps(v) if k == "config_json" and isinstance(v, dict) else v
            for k, v in args.items()}  # as pipeline_arguments passes it
    known = build_pipeline().component_spec.inputs or {}
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise InvalidArgumentError("params", unknown, "not parameters of the pipeline "
                                   f"{PIPELINE_NAME!r}; it has {', '.join(known)}")
    for name, value in args.items():
        kind = known[name].type
        if kind == "Integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgumentError(name, value, "must be an integer")
        if kind == "Float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidArgumentError(name, value, "must be a number")
        if kind == "String" and not isinstance(value, str):
            raise InvalidArgumentError(name, value, "must be a string")
    defaults = {name: spec.default for name, spec in known.items()}
    check_params(**{**defaults, **args})


@contextlib.contextmanager
def _scratch_tmpdir() -> Iterator[str]:
    """A temporary directory that the run's step processes take as their $TMPDIR."""
    before = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="marquee-run-") as scratch:
        os.environ["TMPDIR"] = scratch
        try:
            yield scratch
        finally:
            if before is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = before


def run_local(settings: Settings, params: dict[str, Any] | None = None) -> RunResult:
    """Run the same pipeline in this machine's interpreter (kfp.local, no containers)."""
    import kfp.local

    args = pipeline_arguments(settings, params)  # checked before anything is created
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tee = _Tee(sys.stdout, STEP_LOG_TAIL)
    try:
        # kfp.local's workspace and each step's own temporary files (its shell wrapper's
        # mktemp -d) go into one scratch directory that is removed with the run; they were
        # left in $TMPDIR, a directory per step
        with _scratch_tmpdir() as scratch, contextlib.redirect_stdout(tee), \
                warnings.catch_warnings():
            # kfp.local warns, once per step, that an image whose name lacks "python" may not
            # match this interpreter's packages. Not so here: the steps run in this venv,
            # which has the project installed (the image is built from it), so it is noise.
            warnings.filterwarnings("ignore", message=_NON_PYTHON_IMAGE, category=RuntimeWarning)
            kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                           pipeline_root=str(settings.runs_dir.resolve()),
                           workspace_root=str(Path(scratch, "workspace")), raise_on_error=True)
            task = build_pipeline()(**args)
    except RuntimeError as exc:  # kfp.local: "Pipeline … FAILURE. Inner task failed: 'x'."
        step = _FAILED_STEP.search(ANSI.sub("", str(exc)))
        if step is None:
            raise
        cause = " | ".join(exception_lines(tee.text())) or "see the step's log above"
        raise PipelineRunError(PIPELINE_NAME, step.group(1), cause) from exc
    version = int(task.output)
    seconds = time.perf_counter() - started
    from marquee.registry import Registry

    info = Registry.from_settings(settings).get_version(version)
    return RunResult(run_id=info.tags.get("pipeline_run_id", ""), version=version,
                     gate=info.tags.get("gate.decision", ""), metrics=info.metrics,
                     bundle_uri=info.bundle_uri, seconds=seconds)


def submit(settings: Settings, params: dict[str, Any] | None = None, host: str | None = None,
           experiment: str = "marquee", client: Any = None, run_name: str | None = None) -> str:
    """Submit a run to a Kubeflow Pipelines host; returns the run id.

    ``client`` defaults to ``kfp.Client(host=...)``; tests pass a recording client because
    no Kubeflow host is reachable from this machine. ``run_name`` (the run's display name)
    defaults to the pipeline's name and the time; the retrain trigger passes one made from
    its own run id, so that it can find the run by it when it never got the run's id back.
    """
    host = host or settings.kubeflow_host
    if client is None:
        if not host:
            raise InvalidArgumentError("host", host,
                                       "no Kubeflow host: pass --host or set MARQUEE_KUBEFLOW_HOST")
        import kfp

        client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(
        build_pipeline(settings.pipeline_image),
        arguments=pipeline_arguments(settings, params, local=False),
        run_name=run_name or f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}",
        experiment_name=experiment,
    )
    return str(run.run_id)


RUN_SPEC_ENV = "MARQUEE_PIPELINE_RUN_SPEC"


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.run`` with ``MARQUEE_PIPELINE_RUN_SPEC='{"settings": {...},
    "params": {...}}'`` in the environment (not on the command line, which any user of the
    machine can read, and a store or registry URI may carry a password): ``run_local`` with
    those settings and parameters; the result is printed as one JSON object, the last line of
    stdout. The kfp-local retraining launcher runs this as a child process, so that a run
    that hangs can be stopped with its steps (``monitoring/retrain/launcher.py``)."""
    args = sys.argv[1:] if argv is None else argv
    text = os.environ.get(RUN_SPEC_ENV)
    if args or not text:
        print(f"usage: {RUN_SPEC_ENV}='{{\"settings\": {{...}}, \"params\": {{...}}}}' "
              "python -m pipelines.run", file=sys.stderr)
        return 2
    spec = json.loads(text)
    unwind_on_sigterm()  # the launcher stops a run with SIGTERM: kfp.local's cleanup runs
    try:
        result = run_local(Settings(**spec.get("settings", {})), spec.get("params") or {})
    except MarqueeError as exc:  # the step's log is above; this is the one-line summary
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
