"""Train: the multi-stage recommender (two-tower retrieval, ranker) on train + validation."""


from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train(dataset: Input[Dataset], train: Input[Dataset], val: Input[Dataset],
          best_params: Input[Artifact], model: Output[Model], stats: Output[Metrics],
          config_json: str = "{}", seed: int = 42) -> None:
    """Fit ``recsys.Recommender`` with the defaults, the ``config_json`` overrides and then
    the tuned parameters (in that order of precedence, last wins: tune searched around the
    defaults with ``config_json``, so its choices are the ones to keep)."""
    import time
    from pathlib import Path

    from components.common import read_json, read_tables, recommender_config
    from recsys.recommender import Recommender

    config = recommender_config(config_json, seed, read_json(best_params.path).get("params", {}))
    inter, users, items = read_tables(dataset.path, train.path, val.path)
    started = time.perf_counter()
    rec = Recommender(config).fit(inter, users, items)
    seconds = time.perf_counter() - started
    rec.save(Path(model.path))
    model.metadata.update({"config": config.model_dump(), "train_rows": len(inter),
                           "fingerprint": dataset.metadata.get("fingerprint", "")})
    stats.log_metric("train_seconds", round(seconds, 2))
    stats.log_metric("final_loss", float(rec.losses[-1]) if rec.losses else 0.0)
