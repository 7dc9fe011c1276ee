"""The ranker's label share (``ranker.label_frac``) and folds on the random split, validation only.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/label_share_sweep.py

Each fold holds out ``label_frac`` of every user's events as the ranker's labels and fits the
retrieval model and the feature tables on the rest; serving uses the model fitted on all of
them. A smaller share brings the training lists' features closer to serving's (the shift that
``nn_ranker_sweep.py`` measured), with fewer positives per list. The ``set`` configuration of
``quality.py`` (label_frac 0.2, 8 folds) against 0.1 × 10 folds and 0.3 × 6 folds, seeds 42, 43,
44, on the validation split carved from the random split's train part; the test split is never
scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import validation_sweep  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=HERE.parent / ".marquee" / "data" / "cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--settings", nargs="+", default=["0.1:10", "0.3:6"],
                   help="label_frac:folds pairs")
    args = p.parse_args(argv)
    sweep = ["--cache", str(args.cache), "--seeds", *map(str, args.seeds)]
    for setting in args.settings:
        frac, folds = setting.split(":")
        sweep += ["--setting", f"{setting}=ranker.label_frac={float(frac)},"
                               f"ranker.folds={int(folds)}"]
    return validation_sweep.main(sweep)  # the set configuration, random split, validation


if __name__ == "__main__":
    raise SystemExit(main())
