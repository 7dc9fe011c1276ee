"""Writing a benchmark's run into ``benchmarks/RESULTS.md``, under its own section."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_to_section(section: str, text: str, results: Path = RESULTS) -> None:
    """Put ``text`` at the end of ``section`` (a ``## `` heading, created at the end of the
    file when missing), before the next section, so later sections stay where they are."""
    current = results.read_text() if results.exists() else "# Benchmark results\n"
    if section not in current:
        current = current.rstrip("\n") + f"\n\n{section}\n\n"
    head, _, tail = current.partition(section)
    nxt = tail.find("\n## ")
    body, rest = (tail, "") if nxt < 0 else (tail[:nxt], tail[nxt:])
    results.write_text(head + section + body.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
                       + rest)
