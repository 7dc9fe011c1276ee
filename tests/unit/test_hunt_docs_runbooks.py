"""What the user documentation tells people to type exists, as written.

The runbooks are followed by someone paged at night: a command that does not exist, a flag
spelled differently, a metric that is never exported or a label the metric does not carry
fails exactly when there is no time to find out why. These tests hold the documentation to
the real command line (its argument parser, without running anything), the metric
catalogue and the objects the chart renders.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((REPO / "monitoring" / "runbooks").glob("*.md"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
        REPO / "monitoring" / "README.md", *RUNBOOKS]

# Upper-case placeholders of the README's command table, and a value that parses for each.
PLACEHOLDERS = {"N": "1", "V": "1", "NAME": "candidate", "TEXT": "a reason", "URL":
                "http://127.0.0.1:1", "PATH": "{dir}", "DIR": "{dir}"}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _fenced(text: str) -> list[str]:
    """``marquee …`` lines of fenced code blocks, comments cut, continuation lines joined."""
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("marquee "):
                out.append(re.split(r"\s+#", line)[0].strip())
    return out


def _inline(text: str) -> list[str]:
    return re.findall(r"`(marquee [^`]+)`", text.replace("\n", " "))


def _argv(command: str, tmp: Path) -> list[list[str]]:
    """The argument vectors a documented command line stands for (placeholders filled in,
    ``[optional]`` parts kept, ``a|b`` alternatives reduced to the first, ``x / y / z`` split)."""
    command = command.replace("\\|", "|").replace("…", "x")
    command = re.sub(r"<[^>]+>", "x", command)
    command = re.sub(r"\[([^\]]*)\]", r"\1", command)
    parts = [p.strip() for p in command.split(" / ")]
    head = shlex.split(parts[0])
    argvs = [head[1:]]
    for alt in parts[1:]:  # "marquee registry list / show V": siblings of the first
        argvs.append([*head[1:2], *shlex.split(alt)])
    return [[PLACEHOLDERS.get(a, a).format(dir=tmp) if a in PLACEHOLDERS else a.split("|")[0]
             for a in argv] for argv in argvs]


def _parse(argv: list[str]) -> None:
    """Parse ``marquee ARGV`` with the real command tree, down to the leaf command, without
    invoking anything (click's ``make_context``)."""
    from marquee.cli import cli

    cmd: click.Command = cli
    ctx = cli.make_context("marquee", list(argv))
    while hasattr(cmd, "list_commands"):
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not rest:
            return
        sub = cmd.get_command(ctx, rest[0])  # type: ignore[attr-defined]
        if sub is None:
            raise click.UsageError(f"no command {rest[0]!r} under {ctx.command_path!r}")
        ctx = sub.make_context(rest[0], rest[1:], parent=ctx)
        cmd = sub


def _problem(argv: list[str], *, complete: bool) -> str | None:
    """Why ``argv`` does not parse; a mention in prose (``complete=False``) may leave out
    required arguments, never use a command, option or value the CLI does not have."""
    try:
        _parse(argv)
    except BaseException as exc:  # click's and Typer's bundled click's exceptions alike
        name = type(exc).__name__
        if not complete and name in ("MissingParameter", "NoArgsIsHelpError"):
            return None
        if not complete and name == "BadOptionUsage" and "requires an argument" in str(exc):
            return None  # "`--namespace` of `marquee rollout controller`" style mentions
        return f"{name}: {exc}"
    return None


def _commands(complete: bool) -> list[tuple[str, str]]:
    seen = []
    for doc in DOCS:
        text = doc.read_text()
        for command in (_fenced(text) if complete else _inline(text)):
            if (_rel(doc), command) not in seen:
                seen.append((_rel(doc), command))
    return seen


@pytest.mark.parametrize(("doc", "command"), _commands(complete=True))
def test_every_command_in_a_code_block_parses_with_the_real_cli(
        doc: str, command: str, tmp_path: Path) -> None:
    for argv in _argv(command, tmp_path):
        assert _problem(argv, complete=True) is None, (doc, command, _problem(argv, complete=True))


def test_every_command_mentioned_in_the_docs_uses_real_commands_and_options(
        tmp_path: Path) -> None:
    problems = [(doc, command, why) for doc, command in _commands(complete=False)
                for argv in _argv(command, tmp_path)
                if (why := _problem(argv, complete=False)) is not None]
    assert not problems, problems


def test_the_command_checks_see_a_misspelt_flag() -> None:
    """The checks above would pass on anything if parsing never failed."""
    assert _problem(["rollout", "abort", "x", "--namespce", "marquee"], complete=False)
    assert _problem(["rollout", "abortt", "x"], complete=False)
    assert _problem(["drift", "check", "--since"], complete=True)
    assert _problem(["rollout", "abort"], complete=False) is None
    assert _problem(["rollout", "abort"], complete=True)


def _metric_specs() -> dict[str, tuple[str, ...]]:
    from monitoring.metrics import CATALOGUE

    specs: dict[str, tuple[str, ...]] = {}
    for m in CATALOGUE:
        for series in {m.name, *m.series_names}:
            labels = (*m.labels, "le") if series.endswith("_bucket") else m.labels
            specs[series] = labels
    return specs


def test_every_metric_a_doc_names_is_in_the_catalogue() -> None:
    specs = _metric_specs()
    unknown = [(_rel(doc), name) for doc in DOCS
               for name in sorted(set(re.findall(r"\bmarquee_[a-z0-9_]*[a-z0-9]\b",
                                                 doc.read_text())))
               if name not in specs]
    assert not unknown, unknown


# Labels every scraped or pushed series may carry besides its own (target and push labels).
TARGET_LABELS = {"namespace", "job", "instance", "pod", "service", "container", "endpoint"}


def _wrong_labels(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    specs = _metric_specs()
    wrong = []
    for name, selector in re.findall(r"\b(marquee_[a-z0-9_]+)\{([^}]*)\}", text):
        bare = re.sub(r'"[^"]*"', '""', selector)  # values out: only label names left
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=|,|$)", bare):
            if name in specs and label not in specs[name] and label not in TARGET_LABELS:
                wrong.append((name, label, specs[name]))
    return wrong


def test_every_label_a_doc_selects_on_is_one_its_metric_carries() -> None:
    wrong = [(_rel(doc), *w) for doc in DOCS for w in _wrong_labels(doc.read_text())]
    assert not wrong, wrong
    # and the check sees a label the metric does not carry
    assert _wrong_labels('`marquee_router_feedback_total{model_version="3",event="click"}`') \
        == [("marquee_router_feedback_total", "model_version", ("variant", "event"))]


def _chart_objects() -> list[dict]:
    sys.path.insert(0, str(REPO / "tests" / "k8s"))
    try:
        import chartlib
    finally:
        sys.path.pop(0)
    return chartlib.objects({"settings": {"storeUri": "s3://my-bucket/marquee"}})


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.stem)
def test_kubectl_lines_of_a_runbook_name_the_namespace_and_real_objects(runbook: Path) -> None:
    """In the release namespace (``-n marquee``, what the runbooks' ``marquee`` commands use),
    with the label selectors and Service names the chart gives its objects (release
    ``marquee``). Without ``-n`` kubectl looks in the caller's current namespace and finds
    nothing, which reads as "no jobs failed"."""
    objects = _chart_objects()
    components = {o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
                  for o in objects}
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    kinds = {"svc": "Service", "cronjob": "CronJob", "deployment": "Deployment"}
    problems = []
    for command in re.findall(r"`(kubectl [^`]+)`", runbook.read_text().replace("\n", " ")):
        argv = shlex.split(command)
        if not ({"-n", "--namespace"} & set(argv)
                or any(a.startswith(("--namespace=", "-n=")) for a in argv)):
            problems.append(f"no namespace: {command}")
        namespace = argv[argv.index("-n") + 1] if "-n" in argv else None
        for sel in re.findall(r"app\.kubernetes\.io/component=([a-z-]+)", command):
            if sel not in components:
                problems.append(f"no object has component={sel}: {command}")
        if namespace == "marquee":
            for kind, name in re.findall(r"\b(svc|cronjob|deployment)/([a-z0-9-]+)", command):
                if (kinds[kind], name) not in names:
                    problems.append(f"the chart renders no {kinds[kind]} {name}: {command}")
    assert not problems, problems
