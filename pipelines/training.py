"""The training pipeline: only wiring. Every step is a component from ``components/``.

ingest → validate → split → features ─────────────────────────┐
                          └→ tune → train → evaluate (+ gate) → register
"""


from collections.abc import Callable

from kfp import dsl

from components.factory import DEFAULT_IMAGE, build_components

__all__ = ["PIPELINE_NAME", "build_pipeline"]

PIPELINE_NAME = "marquee-training"


def build_pipeline(base_image: str = DEFAULT_IMAGE) -> Callable:
    """The pipeline function, its components running on ``base_image``."""
    c = build_components(base_image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Ingest movie events, train the multi-stage recommender, "
                              "evaluate it against production and register it.")
    def training_pipeline(
        source: str = "movielens-100k",
        split_mode: str = "user_temporal",
        test_frac: float = 0.2,
        val_frac: float = 0.1,
        n_trials: int = 0,
        tune_timeout_seconds: int = 600,
        config_json: str = "{}",
        gate_tolerance: float = -1.0,
        reference_rows: int = 100_000,
        seed: int = 42,
        store_uri: str = "",
        registry_uri: str = "",
        s3_endpoint_url: str = "",
        home: str = "",
    ) -> int:
        """Ingest movie events, train the multi-stage recommender, evaluate it against
        production and register it.

        Args:
            source: Where the events come from: movielens-100k (downloaded once, cached
                under home), movielens-100k:PATH (a GroupLens or RecBole copy, directory
                or zip), synth:users=N,items=N,events=N[,seed=N] (synthetic events) or a
                directory of interactions/users/items tables (.parquet, .csv or .tsv). Paths
                are read inside the step's container.
            split_mode: How events are held out: user_temporal (each user's latest events),
                temporal (global time cutoffs) or user_random (a seeded per-user draw).
            test_frac: Share of the events held out for the test split (per user in the
                user_* modes), in (0, 1): the model is evaluated and gated on it.
            val_frac: Share of the events held out for validation, which tuning scores its
                trials on, in [0, 1), above 0 when n_trials > 0; test_frac + val_frac must be
                below 1. The final model is trained on train + validation.
            n_trials: Optuna trials of the hyper-parameter search (0 or more); 0 skips tuning
                and trains the defaults with the config_json overrides.
            tune_timeout_seconds: Time budget of the whole search in seconds (1 or more): no
                new trial starts after it. Used only when n_trials > 0.
            config_json: JSON object of recommender settings merged over the defaults, e.g.
                {"retrieval": {"epochs": 10}, "ranker": {"enabled": false}}; {} keeps
                the defaults. Tuned values override it; an unknown setting or a bad value fails
                the run.
            gate_tolerance: Relative NDCG@10 drop from production the gate still accepts, 0 to
                1 (0.02: up to 2 % worse). Negative (the default -1.0): the evaluate step's
                MARQUEE_GATE_TOLERANCE setting, 0.02 unless set.
            reference_rows: Most training events (1 or more) sampled for the drift reference
                profile that monitoring compares served requests with.
            seed: Random seed of the synthetic generator (unless the source sets seed=), the
                user_random split, the reference sample, the search and the model.
            store_uri: Object store the model bundle is published to: a directory or
                s3://bucket/prefix. Empty: the step's MARQUEE_STORE_URI, else
                <home>/store.
            registry_uri: MLflow tracking URI of the model registry, e.g. http://mlflow:5000.
                Empty: the step's MARQUEE_REGISTRY_URI, else sqlite:///<home>/registry.db.
            s3_endpoint_url: S3 endpoint for an s3:// store and bundles (MinIO, …). Empty:
                the step's MARQUEE_S3_ENDPOINT_URL, else the AWS default.
            home: Marquee home directory inside the step's container (MovieLens cache, default
                store and registry). Empty: the step's MARQUEE_HOME, else .marquee.

        Returns:
            Output: The registry version number the trained model was registered as.
        """
        # ingest checks every parameter a later step consumes: a run from the UI fails first
        ingested = c.ingest(source=source, home=home, seed=seed, split_mode=split_mode,
                            test_frac=test_frac, val_frac=val_frac, n_trials=n_trials,
                            tune_timeout_seconds=tune_timeout_seconds, config_json=config_json,
                            gate_tolerance=gate_tolerance, reference_rows=reference_rows,
                            store_uri=store_uri, registry_uri=registry_uri,
                            s3_endpoint_url=s3_endpoint_url)
        # Kubeflow caches a task whose inputs it has seen (kfp's default): a retraining run
        # with the last run's parameters (the same s3:// prefix, new events in it) got the
        # old dataset, so every later step hit the cache too and the old model was registered
        # again. The steps that read what changes between runs (the source; the registry's
        # production) or write (register) always run; the rest follow their inputs.
        ingested.set_caching_options(False)
        checked = c.validate(dataset=ingested.outputs["dataset"])
        data = checked.outputs["validated"]
        parts = c.split(dataset=data, mode=split_mode, test_frac=test_frac, val_frac=val_frac,
                        seed=seed)
        reference = c.features(dataset=data, train=parts.outputs["train"],
                               val=parts.outputs["val"], max_rows=reference_rows, seed=seed)
        tuned = c.tune(dataset=data, train=parts.outputs["train"], val=parts.outputs["val"],
                       n_trials=n_trials, timeout_seconds=tune_timeout_seconds,
                       config_json=config_json, seed=seed)
        trained = c.train(dataset=data, train=parts.outputs["train"], val=parts.outputs["val"],
                          best_params=tuned.outputs["best_params"], config_json=config_json,
                          seed=seed)
        evaluated = c.evaluate(dataset=data, train=parts.outputs["train"],
                               val=parts.outputs["val"], test=parts.outputs["test"],
                               model=trained.outputs["model"], tolerance=gate_tolerance,
                               store_uri=store_uri, registry_uri=registry_uri,
                               s3_endpoint_url=s3_endpoint_url, home=home)
        evaluated.set_caching_options(False)
        registered = c.register(dataset=data, model=trained.outputs["model"],
                                reference=reference.outputs["reference"],
                                report=evaluated.outputs["report"],
                                best_params=tuned.outputs["best_params"],
                                run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                run_uid=dsl.PIPELINE_JOB_ID_PLACEHOLDER, store_uri=store_uri,
                                registry_uri=registry_uri, s3_endpoint_url=s3_endpoint_url,
                                home=home)
        registered.set_caching_options(False)
        return registered.outputs["Output"]

    return training_pipeline
