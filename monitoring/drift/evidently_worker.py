"""Renders Evidently's drift report in a child process, beside the drift check.

Importing Evidently costs 4-10 s of CPU here. The drift check starts this worker first thing;
the worker imports Evidently on the second core while the check reads and scores the window,
then waits for the check to drop its samples into the work directory:

    <dir>/request.json      {"features": [[name, kind, method, threshold], ...]}
    <dir>/reference.parquet, <dir>/current.parquet   (FEATURE_SPEC names)
    -> <dir>/evidently.html

    python -m monitoring.drift.evidently_worker <dir>
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

__all__ = ["render", "main"]


def render(features: list[list], reference, current) -> str:  # noqa: ANN001 - DataFrames
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[n for n, kind, _, _ in features if kind == "numeric"],
        categorical_columns=[n for n, kind, _, _ in features if kind == "categorical"])
    report = Report([ValueDrift(column=n, method=m, threshold=t) for n, _, m, t in features],
                    include_tests=True)
    snapshot = report.run(Dataset.from_pandas(current, data_definition=definition),
                          Dataset.from_pandas(reference, data_definition=definition))
    return snapshot.get_html_str(as_iframe=False)


def main(argv: list[str]) -> int:
    work = Path(argv[1])
    parent = os.getppid()
    import evidently.metrics  # noqa: F401 - the slow part, done while the parent works
    from recsys.data.parquet import read_parquet

    request = work / "request.json"
    while not request.exists():
        if os.getppid() != parent:  # the drift check is gone
            return 1
        time.sleep(0.05)
    spec = json.loads(request.read_text())
    html = render(spec["features"], read_parquet(work / "reference.parquet"),
                  read_parquet(work / "current.parquet"))
    tmp = work / "evidently.html.part"
    tmp.write_text(html)
    os.replace(tmp, work / "evidently.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
