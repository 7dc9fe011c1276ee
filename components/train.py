"""Train: the multi-stage recommender (two-tower retrieval, ranker) on train + validation."""


from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def train(dataset: Input[Dataset], train: Input[Dataset], val: Input[Dataset],
          best_params: Input[Artifact], model: Output[Model], stats: Output[Metrics],
          config_json: str = "{}", seed: int = 42) -> None:
    """Fit the multi-stage recommender (two-tower retrieval, ranker) on train + validation.

    The configuration is the defaults, then the ``config_json`` overrides, then the tuned
    parameters (last wins: tune searched around the defaults with ``config_json``, so its
    choices are the ones to keep).

    Args:
        dataset: The validated contract tables (users and items are read from it).
        train: The training interactions.
        val: The validation interactions, fitted on too.
        best_params: The search result of tune; its params are applied last.
        config_json: JSON object of recommender settings merged over the defaults; {}
            keeps the defaults. An unknown setting or a bad value fails the step.
        seed: Seed of the model; a seed in config_json wins over it.

    Returns:
        model: The saved recommender; its metadata holds the configuration, the number of
            training rows and the data fingerprint.
        stats: train_seconds and final_loss.
    """
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
