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
        ingested = c.ingest(source=source, home=home, seed=seed)
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
        registered = c.register(dataset=data, model=trained.outputs["model"],
                                reference=reference.outputs["reference"],
                                report=evaluated.outputs["report"],
                                best_params=tuned.outputs["best_params"],
                                run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                                run_uid=dsl.PIPELINE_JOB_ID_PLACEHOLDER, store_uri=store_uri,
                                registry_uri=registry_uri, s3_endpoint_url=s3_endpoint_url,
                                home=home)
        return registered.outputs["Output"]

    return training_pipeline
