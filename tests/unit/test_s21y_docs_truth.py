"""What the docs name must exist: the variables, Helm values, files, make targets and
benchmark figures they quote.

``test_hunt_docs_runbooks`` parses every command line of the docs and
``test_s20x_docs_cover_the_cli`` holds the README's tables to the command tree and the
settings' defaults. These tests hold the rest of the prose to the repository: a platform
engineer who copies ``--set retrainTrigger.someValue=…`` from docs/DEPLOY.md, opens a file the
docs point at, or runs ``make <target>`` gets what the docs say. Nothing is run: the docs, the
settings classes, ``helm/marquee/values.yaml``, the Makefile and ``benchmarks/RESULTS.md`` are
read.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES_FILE = REPO / "helm" / "marquee" / "values.yaml"
VALUES: dict[str, Any] = yaml.safe_load(VALUES_FILE.read_text())

#: Every Markdown page of the repository that a user reads (benchmarks/RESULTS.md is the
#: record the others quote, and is checked as such below).
DOCS = sorted(
    p for p in REPO.rglob("*.md")
    if not any(part.startswith(".") for part in p.relative_to(REPO).parts)
    and p.relative_to(REPO).parts[0] not in ("benchmarks", "tests")
    and "egg-info" not in str(p)
)


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def _text(rel: str) -> str:
    return (REPO / rel).read_text()


def _section(text: str, heading: str) -> str:
    """The body of ``heading`` (a whole heading line, ``## …`` or ``### …``) up to the next
    heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    body = text.split(heading + "\n", 1)[1]
    stop = re.search(rf"^#{{1,{len(level)}}} ", body, flags=re.M)
    return body[:stop.start()] if stop else body


def _rows(section: str) -> list[list[str]]:
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("|---")]


def _code_spans(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks (comments after `#` dropped)."""
    spans = []
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    for block in fenced:
        spans += [line.split(" #", 1)[0] for line in block.splitlines()]
    outside = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return spans + re.findall(r"`([^`\n]+)`", outside)


def test_the_docs_list_is_not_empty() -> None:
    names = {_rel(p) for p in DOCS}
    assert {"README.md", "docs/DEPLOY.md", "docs/CONTRACTS.md", "monitoring/README.md",
            "k8s/README.md"} <= names, names


# --- environment variables ----------------------------------------------------------------

def _settings_classes() -> list[Any]:
    from marquee.settings import Settings
    from monitoring.retrain.config import TriggerSettings
    from serving.router.settings import RouterSettings
    from serving.settings import ServingSettings

    return [Settings, ServingSettings, RouterSettings, TriggerSettings]


def _field_variables(cls: Any) -> dict[str, str]:
    """Field name → the variable that sets it (``prefix + name``)."""
    prefix = cls.model_config["env_prefix"]
    return {name: f"{prefix}{name}".upper() for name in cls.model_fields}


def _variables_read_by_the_code() -> set[str]:
    known: set[str] = set()
    for cls in _settings_classes():
        known |= set(_field_variables(cls).values())
        for field in cls.model_fields.values():
            alias = field.validation_alias
            for choice in getattr(alias, "choices", [alias] if alias else []):
                if isinstance(choice, str):
                    known.add(choice.upper())
    for package in ("marquee", "serving", "monitoring", "pipelines", "components", "recsys"):
        for path in (REPO / package).rglob("*.py"):
            known |= set(re.findall(r"[\"'](MARQUEE_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    # the chart sets some variables itself (MARQUEE_ROUTER_ADMIN_TOKEN from a Secret, …)
    for path in (REPO / "helm" / "marquee" / "templates").rglob("*"):
        if path.is_file():
            known |= set(re.findall(r"name: (MARQUEE_[A-Z0-9_]*[A-Z0-9])\b", path.read_text()))
    return known


def test_every_marquee_variable_in_any_doc_is_read_by_the_code() -> None:
    """Also the pages the older test does not read (k8s/README.md, serving/rollout/README.md):
    a variable named in a doc but read by nothing is set by a user and silently ignored."""
    known = _variables_read_by_the_code()
    unknown = sorted({(_rel(doc), name) for doc in DOCS
                      for name in re.findall(r"\bMARQUEE_[A-Z0-9_]*[A-Z0-9]\b(?!_\*)",
                                             doc.read_text())
                      if name not in known})
    assert not unknown, unknown


def test_readme_settings_table_has_every_settings_field() -> None:
    """The README says of its first variable table: "every field is in this table"."""
    from marquee.settings import Settings

    table = _section(_text("README.md"), "## Configuration").split("\n\n", 2)[1]
    named = set(re.findall(r"`(MARQUEE_[A-Z0-9_]+)`", table))
    missing = sorted(set(_field_variables(Settings).values()) - named)
    assert not missing, f"Settings fields without a row in README 'Configuration': {missing}"


def test_monitoring_readme_names_every_retrain_trigger_setting() -> None:
    """README.md sends readers to monitoring/README.md for ``MARQUEE_RETRAIN_*``; that section
    must name every field of ``TriggerSettings`` (as the suffix after ``MARQUEE_RETRAIN_``)."""
    from monitoring.retrain.config import TriggerSettings

    section = _section(_text("monitoring/README.md"),
                       "## Retrain trigger settings (`MARQUEE_RETRAIN_*`)")
    words = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", section))
    words |= {w.removeprefix("MARQUEE_RETRAIN_") for w in
              re.findall(r"MARQUEE_RETRAIN_[A-Z0-9_]+", section)}
    missing = sorted(var.removeprefix("MARQUEE_RETRAIN_")
                     for var in _field_variables(TriggerSettings).values()
                     if var.removeprefix("MARQUEE_RETRAIN_") not in words)
    assert not missing, f"TriggerSettings fields monitoring/README.md does not name: {missing}"


# --- Helm values ----------------------------------------------------------------------------

def _has_value(path: str, node: Any = VALUES) -> bool:
    for segment in path.split("."):
        if node == {}:
            return True  # a free-form map (``serviceMonitor.labels.release``)
        if not isinstance(node, dict) or segment not in node:
            return False
        node = node[segment]
    return True


def _keys_anywhere(node: Any) -> set[str]:
    if not isinstance(node, dict):
        return set()
    out = set(node)
    for child in node.values():
        out |= _keys_anywhere(child)
    return out


_VALUE_PATH = re.compile(r"(?<![\w./<>=-])([a-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+)")
_FILE_SUFFIX = re.compile(r"\.(py|ya?ml|md|json|txt|html|parquet|jsonl|sh)$")


def _value_paths(doc: Path) -> set[str]:
    """Dotted names in code spans whose first segment is a top-level key of values.yaml, plus
    the keys a ``(+ `key`, …)`` note adds beside the one before it."""
    text = doc.read_text()
    found: set[str] = set()
    for span in _code_spans(text):
        for match in _VALUE_PATH.finditer(span):
            path = match.group(1)
            if path.split(".")[0] in VALUES and not _FILE_SUFFIX.search(path):
                found.add(path)
    for base, extra in re.findall(r"`([a-z][\w.]*)`\s*\(\+\s*((?:`\w+`(?:,\s*)?)+)\)", text):
        if base.split(".")[0] in VALUES:
            parent = base.rsplit(".", 1)[0]
            found |= {f"{parent}.{key}" for key in re.findall(r"`(\w+)`", extra)}
    return found


def test_every_helm_value_the_docs_name_exists_in_values_yaml() -> None:
    missing = sorted({(_rel(doc), path) for doc in DOCS for path in _value_paths(doc)
                      if not _has_value(path)})
    assert not missing, f"Helm values named in the docs but not in values.yaml: {missing}"


def test_the_value_paths_were_found() -> None:
    found = _value_paths(REPO / "docs" / "DEPLOY.md")
    assert {"settings.storeUri", "models.startupTimeoutSeconds", "router.shadowMaxInFlight",
            "s3.accessKeyIdKey", "sink.auth.tokenKey"} <= found, sorted(found)


def test_short_value_names_in_the_docs_exist_where_they_belong() -> None:
    """Prose names some values without their block: the retrain trigger's in DEPLOY's
    section on retrained versions (``kubeflowPollSeconds``, ``persistence.enabled``), the
    router's request state everywhere (``requestStateMib``)."""
    trigger = VALUES["retrainTrigger"]
    k8s_words = {"emptyDir"}  # a Kubernetes volume type, not a value
    section = _section(_text("docs/DEPLOY.md"),
                       "### Retrained versions start their own shadow rollout")
    wrong = []
    for span in re.findall(r"`([a-z][A-Za-z0-9.]*)(?:[:=][^`]*)?`", section):
        head = span.split(".")[0]
        if head in VALUES or span in k8s_words or not re.search(r"[A-Z.]", span):
            continue  # a full path (checked above), or a plain word (get, create, shadow)
        if "." in span and head not in _keys_anywhere(trigger):
            continue  # a Python name (kfp.Client)
        if not (_has_value(span, trigger) or span in _keys_anywhere(trigger)):
            wrong.append(("docs/DEPLOY.md", f"retrainTrigger.{span}"))
    for doc in DOCS:
        for name in set(re.findall(r"`(requestState\w*)`", doc.read_text())):
            if name not in VALUES["router"]:
                wrong.append((_rel(doc), f"router.{name}"))
    assert not wrong, wrong


def _value_params() -> dict[str, str]:
    """``## @param key text`` lines of values.yaml: key → text."""
    return dict(re.findall(r"^\s*## @param (\S+) (.*)$", VALUES_FILE.read_text(), flags=re.M))


def test_deploy_settings_table_names_the_variable_each_value_sets() -> None:
    """docs/DEPLOY.md "Settings": one row per Helm value, naming the variable the chart sets
    from it; values.yaml's ``@param`` line of the value names the same variable first."""
    section = _section(_text("docs/DEPLOY.md"), "### Settings")
    params = _value_params()
    wrong, rows = [], 0
    for cells in _rows(section):
        value = re.fullmatch(r"`([a-zA-Z][\w.]*)`(?: \(\+.*\))?", cells[0])
        variable = re.match(r"`(MARQUEE_[A-Z0-9_]+)`", cells[1])
        if value is None or variable is None:
            continue
        said = re.match(r"([A-Z][A-Z0-9_]+): ", params.get(value[1], ""))
        if said is None:
            continue  # a Secret's name (the variable comes from its key)
        rows += 1
        if said[1] != variable[1]:
            wrong.append(f"{value[1]}: DEPLOY says {variable[1]}, values.yaml {said[1]}")
    assert not wrong, wrong
    assert rows >= 15


def test_deploy_settings_table_has_every_settings_value() -> None:
    section = _section(_text("docs/DEPLOY.md"), "### Settings")
    tabled = {m for cells in _rows(section) for m in re.findall(r"`(settings\.\w+)`", cells[0])}
    missing = sorted(f"settings.{key}" for key in VALUES["settings"]
                     if f"settings.{key}" not in tabled)
    assert not missing, f"settings.* values without a row in DEPLOY 'Settings': {missing}"


# --- files ----------------------------------------------------------------------------------

#: Object-store keys the docs describe (they live in the store, not the repository).
STORE_KEYS = ("monitoring/drift/<model>", "monitoring/skew/<model>")  # keys in the store
_PATH = re.compile(r"(?<![\w./<>:@-])((?:\.\./)?[A-Za-z_.][\w.{},*<>-]*(?:/[\w.{},*<>-]*)+)")


def _expand(pattern: str) -> list[str]:
    braces = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if not braces:
        return [pattern]
    return [out for alt in braces.group(1).split(",")
            for out in _expand(pattern[:braces.start()] + alt + pattern[braces.end():])]


def _exists(candidate: Path) -> bool:
    for pattern in _expand(str(candidate)):
        pattern = re.sub(r"<[^>]*>", "*", pattern)
        if glob.glob(pattern) or glob.glob(pattern + ".py"):
            return True
    return False


def _repo_paths(doc: Path) -> list[str]:
    """Paths in ``doc`` that point into the repository: their first segment is a top-level
    directory, or a directory beside the doc (``runbooks/<Alert>.md`` in monitoring/)."""
    tops = {p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith(".")}
    out = []
    for match in _PATH.finditer(doc.read_text()):
        path = match.group(1).rstrip(".,:;)")
        first = path.split("/")[0]
        if path.startswith("../shared/") or path.startswith(STORE_KEYS):
            continue  # beside the repository (the session's shared folder), or a store key
        if first.startswith(".") and first != "..":
            continue  # local state (`.marquee/registry.db`), not the repository
        if first in tops or (first not in ("", "..") and (doc.parent / first).is_dir()) \
                or (first == ".." and (doc.parent / path).parent.exists()):
            out.append(path)
    return out


def test_every_repository_path_the_docs_name_exists() -> None:
    missing = []
    for doc in DOCS:
        for path in _repo_paths(doc):
            if not (_exists(REPO / path) or _exists(doc.parent / path)):
                missing.append((_rel(doc), path))
    assert not missing, f"paths named in the docs that the repository does not have: {missing}"


def test_the_paths_were_found() -> None:
    paths = set(_repo_paths(REPO / "docs" / "DEPLOY.md")) | set(_repo_paths(REPO / "README.md"))
    assert {"benchmarks/RESULTS.md", "k8s/examples/rollout-canary.yaml",
            "scripts/install-sysdeps.sh"} <= paths, sorted(paths)


# --- make targets ---------------------------------------------------------------------------

def test_every_make_target_the_docs_name_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, flags=re.M))
    named = {(_rel(doc), target) for doc in DOCS for span in _code_spans(doc.read_text())
             for target in re.findall(r"(?:^|[\s;&|(])make\s+([a-z][\w-]*)", span)}
    assert {t for _, t in named} >= {"demo", "test"}
    missing = sorted((doc, t) for doc, t in named if t not in targets)
    assert not missing, f"make targets named in the docs but not in the Makefile: {missing}"


# --- benchmark figures ----------------------------------------------------------------------

RESULTS = (REPO / "benchmarks" / "RESULTS.md").read_text()
_FIGURE = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![\w.]*\d)")


def _figures(text: str) -> set[str]:
    """Decimal figures (``0.3094``, ``4.47``, ``3,883``): a whole number alone is too common
    to look up."""
    return set(_FIGURE.findall(text))


def _in_results(figure: str) -> bool:
    return re.search(rf"(?<![\d.,]){re.escape(figure)}(?![\d])", RESULTS) is not None


def test_readme_headline_figures_are_in_benchmarks_results() -> None:
    """README "What it measures up to" quotes benchmarks/RESULTS.md: every decimal figure of
    its "measured" column and of the reasons below the table is there."""
    section = _section(_text("README.md"), "## What it measures up to")
    measured = " ".join(cells[1] for cells in _rows(section)[1:])
    reasons = section.split("Why the three unmet targets", 1)[1]
    figures = _figures(measured) | _figures(reasons)
    assert len(figures) >= 20, sorted(figures)
    missing = sorted(f for f in figures if not _in_results(f))
    assert not missing, f"README figures that benchmarks/RESULTS.md does not hold: {missing}"


def test_deploy_figures_citing_results_are_in_benchmarks_results() -> None:
    """Paragraphs of docs/DEPLOY.md that cite benchmarks/RESULTS.md: their decimal figures and
    the ends of their percentage ranges are there (as signed changes: ``+8%``)."""
    paragraphs = [p for p in _text("docs/DEPLOY.md").split("\n\n")
                  if "benchmarks/RESULTS.md" in p]
    assert paragraphs
    missing = []
    for paragraph in paragraphs:
        missing += [f for f in _figures(paragraph) if not _in_results(f)]
        ranges = re.findall(r"[+−-]?(\d+)(?:%?\s*(?:–|to)\s*[+−]?(\d+))?%", paragraph)
        for low, high in ranges:
            for end in filter(None, (low, high)):
                if not re.search(rf"[+−–-]{end}%", RESULTS):
                    missing.append(f"{end}%")
    assert not missing, missing


# --- Kubernetes objects and alerts ------------------------------------------------------------

def _rendered_names() -> set[str]:
    """Names of the objects the chart renders with default values (release ``marquee``), and
    the Lease names its Roles grant."""
    names: set[str] = set()
    for path in (REPO / "k8s" / "rendered").rglob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if not isinstance(obj, dict) or "metadata" not in obj:
                continue
            names.add(obj["metadata"]["name"])
            for rule in obj.get("rules") or []:
                names |= set(rule.get("resourceNames") or [])
    return names


_KINDS = ("Service", "ConfigMap", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig",
          "PersistentVolumeClaim", "Lease", "Deployment", "CronJob", "Role", "InferenceService")


def test_every_chart_object_the_docs_name_is_rendered() -> None:
    """``ServiceMonitor `marquee-model```, ``svc/marquee-trigger``, ``<release>-trigger-state``:
    an object named after its kind, or port-forwarded to, is one the chart renders."""
    rendered = _rendered_names()
    named = set()
    for doc in DOCS:
        text = doc.read_text()
        for name in re.findall(rf"\b(?:headless )?(?:{'|'.join(_KINDS)}) `([^`]+)`", text):
            if name.startswith(("marquee-", "<release>-")) and "<N>" not in name:
                named.add((_rel(doc), name.replace("<release>", "marquee")))
        for name in re.findall(r"\bsvc/(marquee-[a-z0-9-]+)", text):
            named.add((_rel(doc), name))
    assert len(named) >= 8, named
    missing = sorted((doc, name) for doc, name in named if name not in rendered)
    assert not missing, f"objects the docs name but the chart does not render: {missing}"


def test_trigger_port_forward_uses_the_trigger_service_port() -> None:
    port = VALUES["retrainTrigger"]["service"]["port"]
    forwards = re.findall(r"port-forward svc/marquee-trigger (\d+):(\d+)", _text("docs/DEPLOY.md"))
    assert forwards
    assert all(int(remote) == port for _, remote in forwards), (forwards, port)


def test_deploy_lists_exactly_the_alert_rules() -> None:
    rules = yaml.safe_load((REPO / "monitoring" / "prometheus" / "alerts.yaml").read_text())
    groups = rules.get("spec", rules)["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    section = _section(_text("docs/DEPLOY.md"), "## 6. Dashboards and alerts")
    listed = re.search(r"`monitoring/prometheus/alerts.yaml` \(([^)]*)\)", section)
    assert listed is not None
    assert set(re.split(r",\s*", listed[1].strip())) == alerts
    runbooks = {p.stem for p in (REPO / "monitoring" / "runbooks").glob("*.md")}
    assert alerts <= runbooks, alerts - runbooks


# --- statements of docs/DEPLOY.md that the chart decides ------------------------------------

TEMPLATES = REPO / "helm" / "marquee" / "templates"


def _deploy_row(value: str) -> str:
    section = _section(_text("docs/DEPLOY.md"), "### Settings")
    rows = [" | ".join(cells) for cells in _rows(section) if cells[0] == f"`{value}`"]
    assert len(rows) == 1, (value, rows)
    return rows[0]


def test_deploy_says_what_an_empty_candidate_url_template_means_in_the_chart() -> None:
    """The chart fills an empty ``retrainTrigger.candidateUrlTemplate`` with the KServe
    predictor's URL, so a trigger it deploys never starts ``marquee serve`` for a candidate
    (the doc said it did)."""
    template = (TEMPLATES / "trigger" / "deployment.yaml").read_text()
    default = re.search(r"name: MARQUEE_RETRAIN_CANDIDATE_URL_TEMPLATE\n\s*value: ([^\n]+)",
                        template)
    assert default is not None and "-predictor." in default[1]
    row = _deploy_row("retrainTrigger.candidateUrlTemplate")
    assert "predictor" in row, row
    assert "unset there: the trigger starts" not in row, row


def test_deploy_says_where_the_trigger_keeps_its_state() -> None:
    """Every container's state is under /tmp except the retrain trigger's: the chart sets its
    ``MARQUEE_HOME`` to the PersistentVolumeClaim's mount path."""
    template = (TEMPLATES / "trigger" / "deployment.yaml").read_text()
    assert re.search(r"name: MARQUEE_HOME\n\s*value: \{\{ \$rt\.persistence\.mountPath", template)
    images = _section(_text("docs/DEPLOY.md"), "## 1. Prerequisites")
    sentence = re.search(r"state goes to `/tmp`[^.]*\.", images.replace("\n", " "))
    assert sentence is not None
    assert "trigger" in sentence[0], sentence[0]
    assert "persistence" in _deploy_row("settings.home")


def test_deploy_lists_every_peer_the_router_networkpolicy_admits() -> None:
    template = (TEMPLATES / "router" / "networkpolicy.yaml").read_text()
    assert 'eq $.Values.retrainTrigger.rolloutTarget "local"' in template
    security = _section(_text("docs/DEPLOY.md"), "## 7. Security defaults").replace("\n", " ")
    admits = re.search(r"the router then admits only them,[^.]*\.", security)
    assert admits is not None
    assert "rolloutTarget: local" in admits[0], admits[0]


def _signed(cell: str) -> int | None:
    found = re.search(r"([+−-])(\d+)%", cell)
    if found is None:
        return None
    return -int(found[2]) if found[1] in "−-" else int(found[2])


def test_deploy_shadow_figures_span_the_measured_sessions() -> None:
    """The shadow paragraph of DEPLOY quotes a range for a co-located candidate at the lowest
    priority and for the router's own mirroring: the range must reach the sessions' lowest
    and highest medians in benchmarks/RESULTS.md's session tables (it said 8–62% while a
    session measured −2%, and +13–17% while one measured +20%)."""
    shadow = RESULTS.split("### Shadow", 1)[1].split("\n## ", 1)[0]
    columns: dict[str, list[int]] = {"candidate at nice 19": [], "fixed-answer control": []}
    for table in re.findall(r"((?:^ *\|.*\n)+)", shadow, flags=re.M):
        lines = [line.strip() for line in table.splitlines()]
        header = [c.strip() for c in lines[0].split("|")[1:-1]]
        if header[0] != "session":
            continue
        for line in lines[2:]:
            cells = [c.strip() for c in line.split("|")[1:-1]]
            for name, values in columns.items():
                value = _signed(cells[header.index(name)])
                if value is not None:
                    values.append(value)
    assert all(len(v) >= 5 for v in columns.values()), columns
    paragraph = next(p for p in _text("docs/DEPLOY.md").split("\n\n")
                     if "a shadow server sharing the" in p)
    quoted = {_signed(m) for m in re.findall(r"[+−-]\d+%", paragraph)}
    low_cpu, control = columns["candidate at nice 19"], columns["fixed-answer control"]
    assert min(low_cpu) in quoted, (min(low_cpu), sorted(q for q in quoted if q is not None))
    assert max(control) in quoted, (max(control), sorted(q for q in quoted if q is not None))


def _validated_kinds() -> set[str]:
    """Kinds that tests/k8s validates against a held CRD schema (its ``SHARED`` set)."""
    source = (REPO / "tests" / "k8s" / "test_k8s_validate.py").read_text()
    shared = source.split("SHARED = {", 1)[1].split("}", 1)[0]
    return set(re.findall(r'"\w[\w.]*", "\w+", "(\w+)"', shared))


def test_the_docs_claim_crd_validation_only_for_kinds_with_a_schema() -> None:
    """"Objects validated against 0.93 CRDs" claimed the AlertmanagerConfig too, for which no
    schema is held; and the Kubernetes schemas come from kubernetes-validate, not
    ../shared/schemas. A clause saying what is "validated against" a CRD names its kinds, and
    each has a schema."""
    validated = _validated_kinds()
    assert {"InferenceService", "ServiceMonitor", "PrometheusRule"} <= validated
    prerequisites = _section(_text("k8s/README.md"), "## Prerequisites")
    wrong = []
    for row in _rows(prerequisites):
        clause = re.search(r"\(([^()]*validated against[^()]*)\)", row[1])
        if clause is None:
            continue
        kinds = set(re.findall(r"`([A-Z]\w+)`", clause[1].split("validated against")[0]))
        if not kinds or not kinds <= validated:
            wrong.append((row[0], clause[1]))
    assert not wrong, wrong
    assert "kubernetes-validate" in prerequisites
    security = _section(_text("docs/DEPLOY.md"), "## 7. Security defaults").replace("\n", " ")
    claim = security.split("validate them against", 1)[1]
    assert "AlertmanagerConfig" in claim and "without a schema" in claim, claim
