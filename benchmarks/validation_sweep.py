"""Settings of a Marquee configuration on a split's validation part, full model only.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/validation_sweep.py \\
        --setting base= --setting tease=ranker.ease_time_share=0.2,ranker.ease_lambda=100

Each ``--setting NAME=KEY=VALUE,KEY=VALUE`` overrides dotted keys of a configuration of
``quality.py`` (``--config``, default ``set``; an empty list keeps it as it is). Every setting
is fitted once per seed on the validation split carved from the train part of ``--split``
(random or temporal, as ``quality.py`` makes them) and scored there; the test split is never
scored, so what this picks can be run on test once.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quality import Marquee, carve, load_movielens, marquee_candidates, score  # noqa: E402


def parse_setting(text: str) -> tuple[str, dict[str, Any]]:
    """``name=a.b=1,c=x`` → ``("name", {"a.b": 1, "c": "x"})`` (values parsed as JSON)."""
    name, _, rest = text.partition("=")
    overrides: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"setting {name!r}: {part!r} is not KEY=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides


def apply(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    for dotted, value in overrides.items():
        *path, leaf = dotted.split(".")
        node = out
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, default=HERE.parent / ".marquee" / "data" / "cache")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    p.add_argument("--setting", action="append", required=True, help="NAME=KEY=VALUE,...")
    p.add_argument("--split", choices=("random", "temporal"), default="random")
    p.add_argument("--config", choices=("set", "sequential"), default="set")
    args = p.parse_args(argv)

    from recsys.data.split import per_user_random_split, per_user_temporal_split

    data = load_movielens(args.cache)
    train = (per_user_random_split(data.interactions, 0.25, seed=42) if args.split == "random"
             else per_user_temporal_split(data.interactions, 0.25)).train
    fit, val = carve(train, args.split)  # the test split is never used
    for name, overrides in map(parse_setting, args.setting):
        for seed in args.seeds:
            cfg = apply(marquee_candidates(quick=False)[args.config], {**overrides, "seed": seed})
            t0 = time.perf_counter()
            model = Marquee(cfg).fit(fit, data.users, data.items)
            ndcg = score(model.recommend(val["user_id"].unique()), val, fit,
                         len(data.items))["ndcg_at_10"]
            print(json.dumps({"setting": name, "overrides": overrides, "seed": seed,
                              "validation_ndcg_at_10": round(ndcg, 4),
                              "fit_seconds": round(time.perf_counter() - t0)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
