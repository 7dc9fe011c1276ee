#!/usr/bin/env python3
"""Copy the single sources of the alert rules and the Grafana dashboard into the chart.

Helm's ``.Files`` cannot reach outside the chart directory, so the chart carries verbatim
copies of files owned by ``monitoring/``:

    monitoring/prometheus/alerts.yaml  ->  helm/marquee/files/alerts.yaml
    monitoring/grafana/marquee.json    ->  helm/marquee/files/dashboard.json

Run it after changing either source (``tests/k8s/test_k8s_sources.py`` fails until the copies
match); it then re-renders k8s/rendered/ (k8s/render.py), which holds the same rules. A source
that does not exist yet leaves the chart's placeholder in place.

    python helm/sync-alerts.py           # copy
    python helm/sync-alerts.py --check   # exit 1 when a copy differs from its source
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "helm" / "marquee" / "files"
COPIES: dict[Path, Path] = {
    REPO / "monitoring" / "prometheus" / "alerts.yaml": FILES / "alerts.yaml",
    REPO / "monitoring" / "grafana" / "marquee.json": FILES / "dashboard.json",
}


def stale() -> list[tuple[Path, Path]]:
    """(source, copy) pairs whose source exists and differs from the chart's copy."""
    return [(src, dst) for src, dst in COPIES.items()
            if src.is_file() and (not dst.is_file() or dst.read_bytes() != src.read_bytes())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale copies")
    args = parser.parse_args(argv)
    for src, dst in COPIES.items():
        if not src.is_file():
            print(f"{src.relative_to(REPO)}: no source yet, keeping {dst.relative_to(REPO)}")
    todo = stale()
    for src, dst in todo:
        if args.check:
            print(f"{dst.relative_to(REPO)} differs from {src.relative_to(REPO)}: "
                  "run python helm/sync-alerts.py", file=sys.stderr)
        else:
            dst.write_bytes(src.read_bytes())
            print(f"copied {src.relative_to(REPO)} -> {dst.relative_to(REPO)}")
    if todo and not args.check:
        runpy.run_path(str(REPO / "k8s" / "render.py"), run_name="k8s_render")["main"]([])
    return 1 if (args.check and todo) else 0


if __name__ == "__main__":
    sys.exit(main())
