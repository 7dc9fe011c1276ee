"""Training entry point for one or many processes (``torchrun``, a Kubeflow PyTorchJob).

    python -m recsys.train_dist --data DIR --out DIR [--config cfg.json] [--holdout temporal]
    torchrun --nproc_per_node 2 -m recsys.train_dist --data DIR --out DIR

``DIR`` holds the three contract tables as Parquet (``recsys.data.files``). Under ``torchrun``
(``WORLD_SIZE`` > 1) every process joins a gloo process group and the two-tower model trains
with DDP, each process on its shard of every epoch; the ranker stage then runs the same
deterministic computation on every process. Process 0 writes the model (``Recommender.save``)
and ``metrics.json`` (wall time, peak RSS of each process, losses, and with ``--holdout`` the
test metrics of a per-user split made before training).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from pathlib import Path

__all__ = ["main"]

log = logging.getLogger("recsys.train_dist")


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the recommender (torchrun-ready).")
    parser.add_argument("--data", type=Path, required=True, help="directory of Parquet tables")
    parser.add_argument("--out", type=Path, required=True, help="model directory to write")
    parser.add_argument("--config", type=Path, help="RecommenderConfig as JSON")
    parser.add_argument("--holdout", choices=["none", "temporal", "random"], default="none",
                        help="evaluate on each user's last/a random 25%% of events")
    parser.add_argument("--eval-users", type=int, default=20_000,
                        help="test users scored with --holdout (a seeded sample)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args(argv)
    for option, value in (("--threads", args.threads), ("--eval-users", args.eval_users)):
        if value < 1:
            parser.error(f"{option}: must be 1 or more, got {value}")

    import numpy as np
    import torch
    import torch.distributed as dist
    from pydantic import ValidationError

    from marquee.errors import validation_text
    from recsys.config import RecommenderConfig
    from recsys.data.errors import DataError
    from recsys.data.files import read_dataset
    from recsys.data.split import per_user_random_split, per_user_temporal_split
    from recsys.metrics import evaluate
    from recsys.recommender import Recommender

    # Bad arguments are usage errors naming the option (and the setting), on every process
    # before any joins the group, not tracebacks.
    try:
        cfg = (RecommenderConfig.model_validate_json(args.config.read_text()) if args.config
               else RecommenderConfig())
    except OSError as exc:
        parser.error(f"--config {args.config}: cannot read it: {exc.strerror or exc}")
    except ValidationError as exc:
        parser.error(f"--config {args.config}: {validation_text(exc)}")
    started = time.perf_counter()
    try:
        data = read_dataset(args.data)
    except (DataError, OSError, ValueError) as exc:
        parser.error(f"--data {args.data}: {exc}")
    train, test = data.interactions, None
    if args.holdout != "none":
        split = (per_user_temporal_split(train, 0.25) if args.holdout == "temporal"
                 else per_user_random_split(train, 0.25, seed=cfg.seed))
        train, test = split.train, split.test
        if len(test) == 0:  # every metric would be 0 and read as a model that scores 0
            parser.error(f"--holdout {args.holdout}: held out no test events from {args.data} "
                         "(only users with 3 or more events give test events)")
    loaded = time.perf_counter()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    torch.set_num_threads(args.threads)
    rec = Recommender(cfg).fit(train, data.users, data.items, progress=rank == 0,
                               distributed=distributed)
    fitted = time.perf_counter()

    metrics: dict[str, object] = {
        "world_size": world, "load_seconds": round(loaded - started, 2),
        "fit_seconds": round(fitted - loaded, 2), "losses": [round(x, 4) for x in rec.losses],
        "train_events": len(train), "users": len(data.users), "items": len(data.items)}
    if rec.ranker is not None:
        metrics["ranker"] = rec.ranker.report
    if test is not None and rank == 0:
        users = np.sort(test["user_id"].unique())
        if users.size > args.eval_users:
            users = np.sort(np.random.default_rng(0).choice(users, args.eval_users,
                                                            replace=False))
        truth = test[test["user_id"].isin(users)]
        for stages in ("retrieval", "full") if rec.ranker is not None else ("retrieval",):
            m = evaluate(rec.recommend(users, k=10, stages=stages), truth, train,
                         k_values=(10,), n_items=len(data.items))
            metrics[f"test.{stages}"] = {k: m[k] for k in (
                "ndcg_at_10", "recall_at_10", "map_at_10", "precision_at_10",
                "coverage_at_10")}
        metrics["eval_users"] = int(users.size)
    peaks = [_peak_rss_gib()]
    if distributed:
        gathered: list[float | None] = [None] * world
        dist.all_gather_object(gathered, peaks[0])
        peaks = [float(p) for p in gathered if p is not None]
    metrics["peak_rss_gib_per_process"] = [round(p, 2) for p in peaks]
    if rank == 0:
        rec.save(args.out)
        metrics["total_seconds"] = round(time.perf_counter() - started, 2)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log.info("done: %s", json.dumps(metrics))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
