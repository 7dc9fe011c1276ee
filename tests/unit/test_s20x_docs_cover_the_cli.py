"""The README's tables are where a user looks first: they list every command and say what
each variable defaults to.

``test_hunt_docs_runbooks`` holds every command line the docs show to the real parser; these
tests hold the README to the other direction. A command added without a row (``marquee
rollout run``, ``history``, ``controller`` and ``marquee traffic users`` had none) is found only
by someone who reads every ``--help``, and a default quoted in a table drifts silently when
the code's changes. Nothing is run: the real command tree and the settings classes are read.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _rows(section: str) -> list[list[str]]:
    """Cells of the table rows of ``section`` (``\\|`` inside a cell kept as ``|``)."""
    rows = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            rows.append([c.strip().replace("\\|", "|")
                         for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _cli() -> Any:
    from marquee.cli import cli

    return cli


def _leaves(cmd: Any = None, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the real ``marquee`` tree that runs something."""
    cmd = cmd or _cli()
    if not hasattr(cmd, "list_commands"):
        return [path]
    return [leaf for name in cmd.list_commands(None)
            for leaf in _leaves(cmd.get_command(None, name), (*path, name))]


def _path_of(words: list[str]) -> tuple[str, ...]:
    """The command path that ``marquee WORDS…`` names: its words down to a leaf."""
    cmd, path = _cli(), ()
    for word in words:
        if not hasattr(cmd, "list_commands"):
            break
        sub = cmd.get_command(None, word)
        if sub is None:
            break
        cmd, path = sub, (*path, word)
    return path


def _tabled_commands() -> set[tuple[str, ...]]:
    """Commands of the README's table. A cell may name siblings of its first command in two
    short forms: ``marquee registry list / show V`` and ``marquee rollout start …``,
    ``status``."""
    found = set()
    for cells in _rows(_section("The command line")):
        group: list[str] = []
        for span in re.findall(r"`([^`]+)`", cells[0]):
            for i, part in enumerate(span.split(" / ")):
                words = shlex.split(part.replace("…", "x"))
                if words[0] == "marquee":
                    words = words[1:]
                    group = words[:1]
                elif i == 0 or group:
                    words = [*group, *words]
                found.add(_path_of(words))
    return found


def test_every_command_has_a_row_in_the_readme_command_table() -> None:
    missing = [" ".join(leaf) for leaf in _leaves() if leaf not in _tabled_commands()]
    assert not missing, f"commands without a row in README 'The command line': {missing}"


def _defaults() -> dict[str, tuple[Any, str]]:
    """Variable → (default, where): the settings classes' fields and the options that take
    an environment variable."""
    from marquee.settings import Settings
    from monitoring.retrain.config import TriggerSettings
    from serving.router.settings import RouterSettings
    from serving.settings import ServingSettings

    out: dict[str, tuple[Any, str]] = {}
    for cls in (Settings, ServingSettings, RouterSettings, TriggerSettings):
        prefix = cls.model_config["env_prefix"]
        for name, field in cls.model_fields.items():
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            out[f"{prefix}{name}".upper()] = (default, f"{cls.__name__}.{name}")
    for leaf in _leaves():
        cmd = _cli()
        for word in leaf:
            cmd = cmd.get_command(None, word)
        for param in cmd.params:
            for var in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or []):
                out.setdefault(var, (param.default, f"marquee {' '.join(leaf)} {param.opts[0]}"))
    return out


def _same(quoted: str, default: Any) -> bool:
    if default is None or default is PydanticUndefined:
        return False
    if isinstance(default, Path):  # `./.marquee`
        return Path(quoted) == default
    if isinstance(default, (dict, list)):
        return quoted == (str(default).replace("'", '"') if default else "{}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float(quoted) == float(default)
    return quoted == str(default)


def test_every_default_in_the_readme_variable_tables_is_the_codes() -> None:
    defaults = _defaults()
    wrong, checked = [], 0
    for cells in _rows(_section("Configuration")):
        names = re.findall(r"`(MARQUEE_[A-Z0-9_]+)`", cells[0])
        quoted = re.fullmatch(r"`([^`<]+)`", cells[1])  # a literal; `<home>/…` is derived
        if not names or quoted is None:
            continue
        default, where = defaults.get(names[0], (None, "nothing reads it"))
        checked += 1
        if not _same(quoted[1], default):
            wrong.append(f"{names[0]}: README says {quoted[1]!r}, {where} is {default!r}")
    assert not wrong, wrong
    assert checked >= 10  # the tables were found and read


def test_every_marquee_variable_the_docs_name_is_read_by_the_code() -> None:
    """A variable named in a doc but read by nothing is set by a user and silently ignored
    (a misspelling, or a setting renamed since)."""
    known = set(_defaults())
    for path in [*(REPO / "marquee").rglob("*.py"), *(REPO / "serving").rglob("*.py"),
                 *(REPO / "monitoring").rglob("*.py"), *(REPO / "pipelines").rglob("*.py"),
                 *(REPO / "components").rglob("*.py")]:
        known |= set(re.findall(r"[\"'](MARQUEE_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text()))
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            REPO / "monitoring" / "README.md",
            *sorted((REPO / "monitoring" / "runbooks").glob("*.md"))]
    unknown = sorted({(str(doc.relative_to(REPO)), name) for doc in docs
                      for name in re.findall(r"\bMARQUEE_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text())
                      if name not in known})
    assert not unknown, unknown
