"""Tune: Optuna TPE with pruning over the recommender's hyper-parameters."""


from kfp.dsl import Artifact, Dataset, Input, Output


def tune(dataset: Input[Dataset], train: Input[Dataset], val: Input[Dataset],
         best_params: Output[Artifact], n_trials: int = 4, timeout_seconds: int = 600,
         config_json: str = "{}", seed: int = 42) -> None:
    """Search the recommender's hyper-parameters with Optuna (TPE sampler, median pruning).

    Searches on train → validation around the base configuration (the defaults with the
    pipeline's ``config_json`` overrides), maximising validation NDCG@10.

    Args:
        dataset: The validated contract tables (users and items are read from it).
        train: The interactions the trials are fitted on.
        val: The interactions the trials are scored on; with none the search fails the step
            (every trial would score 0).
        n_trials: Number of trials, 0 or more; 0 skips the search and keeps the base.
        timeout_seconds: Time budget of the whole search in seconds (1 or more, else the
            step fails): no new trial starts after it.
        config_json: JSON object of recommender settings merged over the defaults: the base
            configuration the search varies; {} is the defaults.
        seed: Seed of the sampler, of the users scored for pruning and of the models.

    A trial that fails (a parameter combination the model refuses) is recorded with its error
    and the search goes on; a search in which no trial completed fails the step, naming the
    commonest errors. Each finished trial logs a line: its outcome, the best so far and the
    time used of the budget.

    Returns:
        best_params: JSON with params (the best trial's settings; empty when the search
            was skipped; train applies them last, register records them) and the search
            summary (n_trials, completed, pruned, failed, trials: one record per trial,
            best_value, best_params, best_trial; zeros, an empty list and nulls when the
            search was skipped).
    """
    from components.common import check_params, read_tables, recommender_config, write_json
    from recsys.tuning import empty_summary

    # ingest checked them; this step may run on its own
    check_params(n_trials=n_trials, tune_timeout_seconds=timeout_seconds)
    result: dict = {"params": {}, **empty_summary()}
    if n_trials > 0:
        from recsys.tuning import tune as run_study

        inter, users, items = read_tables(dataset.path, train.path)
        val_inter, _, _ = read_tables(dataset.path, val.path)
        if len(val_inter) == 0:  # every trial would score 0 and a random one would be kept
            raise ValueError(
                f"n_trials={n_trials}, but the validation split holds no events to score the "
                "trials on: hold events out with val_frac > 0 (in the per-user split modes "
                "only users with 3 or more events give validation events), or set n_trials=0")
        base = recommender_config(config_json, seed)
        params, summary = run_study(inter, val_inter, users, items, n_trials=n_trials,
                                    timeout=timeout_seconds, seed=seed, base_config=base)
        if summary["completed"] == 0:  # else train would go on unsearched, as if searched
            from recsys.tuning import failure_reasons

            why = failure_reasons(summary["trials"]) or "no error recorded"
            raise RuntimeError(
                f"n_trials={n_trials}: no trial of the search completed ({summary['failed']} "
                f"failed, {summary['pruned']} pruned): {why}. Fix the cause, or set n_trials=0 "
                "to train the config_json configuration without a search")
        result = {"params": params, **summary}
    write_json(best_params.path, result)
    best_params.metadata.update({"n_trials": n_trials})
