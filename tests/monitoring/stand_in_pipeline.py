"""A stand-in for the training pipeline, run by the retrain trigger's CommandLauncher.

NOT the real pipeline (pipelines.run lands later): a real child process that records that it
ran — one JSON file per run in STAND_IN_RUNS_DIR — holds the run open for
STAND_IN_SECONDS, and prints the result line the CommandLauncher parses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    runs = Path(os.environ["STAND_IN_RUNS_DIR"])
    runs.mkdir(parents=True, exist_ok=True)
    run_id = os.environ["MARQUEE_RETRAIN_RUN_ID"]
    record = {"run_id": run_id, "model": os.environ["MARQUEE_RETRAIN_MODEL"],
              "reason": os.environ["MARQUEE_RETRAIN_REASON"], "pid": os.getpid(),
              "started": time.time()}
    (runs / f"{run_id}.json").write_text(json.dumps(record))
    time.sleep(float(os.environ.get("STAND_IN_SECONDS", "0.2")))
    if os.environ.get("STAND_IN_FAIL"):
        print("stand-in pipeline: planted failure", file=sys.stderr)
        return 3
    print(json.dumps({"run_id": f"pipeline-{run_id}", "version": "7",
                      "gate_decision": "candidate"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
