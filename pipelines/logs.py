"""Reading what a pipeline run printed: its steps' logs as kfp.local streams them."""

from __future__ import annotations

import re

from marquee.errors import redact_uri

__all__ = ["ANSI", "exception_lines"]

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours step names and states
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b[^:]*: \S")


def exception_lines(text: str, keep: int = 3) -> list[str]:
    """The last ``keep`` distinct exception lines (``ValueError: …``) of a log, without ANSI
    codes and with URIs' passwords masked: what a failed step or process said about its
    failure, for an error line or a retraining run's record."""
    found: list[str] = []
    for line in (raw.strip() for raw in redact_uri(ANSI.sub("", text)).splitlines()):
        if _EXCEPTION_LINE.match(line) and line not in found:
            found.append(line)
    return found[-keep:]
