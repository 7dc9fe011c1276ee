"""Tune: Optuna TPE with pruning over the recommender's hyper-parameters."""


from kfp.dsl import Artifact, Dataset, Input, Output


def tune(dataset: Input[Dataset], train: Input[Dataset], val: Input[Dataset],
         best_params: Output[Artifact], n_trials: int = 4, timeout_seconds: int = 600,
         config_json: str = "{}", seed: int = 42) -> None:
    """Search on train → validation around the base configuration (the defaults with the
    pipeline's ``config_json`` overrides); ``n_trials`` 0 keeps the base. Writes the best
    parameters as JSON (train applies them last; register records them in the registry)."""
    from components.common import read_tables, recommender_config, write_json

    result: dict = {"params": {}, "trials": 0, "best_value": None}
    if n_trials > 0:
        from recsys.tuning import tune as run_study

        inter, users, items = read_tables(dataset.path, train.path)
        val_inter, _, _ = read_tables(dataset.path, val.path)
        base = recommender_config(config_json, seed)
        params, summary = run_study(inter, val_inter, users, items, n_trials=n_trials,
                                    timeout=timeout_seconds, seed=seed, base_config=base)
        result = {"params": params, **summary}
    write_json(best_params.path, result)
    best_params.metadata.update({"n_trials": n_trials})
