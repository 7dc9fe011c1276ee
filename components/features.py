"""Features: the drift reference profile of the serving feature vector, from training data."""


from kfp.dsl import Dataset, Input, Output


def features(dataset: Input[Dataset], train: Input[Dataset], reference: Output[Dataset],
             max_rows: int = 100_000, seed: int = 42, val: Input[Dataset] = None) -> None:
    """Build the drift reference profile of the serving feature vector from training data.

    A bounded sample of FEATURE_SPEC vectors as a request would see them at training time,
    plus per-feature statistics, so monitoring never reloads training data.

    Args:
        dataset: The validated contract tables (users and items are read from it).
        train: The training interactions.
        max_rows: Most events sampled (seeded, without replacement) into the reference, 1
            or more.
        seed: Seed of the sample.
        val: The validation interactions. The model is fitted on train + validation, and its
            online feature table holds those histories; the reference is built from the same
            events, or every served history would look longer than the reference's (a drift
            that is only the pipeline's). Optional: without it, train alone.

    Returns:
        reference: features.parquet (the sampled vectors) and stats.json (per-feature
            statistics); its metadata holds the row count and the feature names.
    """
    from pathlib import Path

    import pandas as pd

    from components.common import check_params
    from recsys.data.parquet import read_parquet
    from recsys.reference import build_reference, write_reference

    check_params(reference_rows=max_rows)  # ingest checked it; this step may run on its own
    base = Path(dataset.path)
    parts = [Path(train.path)] + ([Path(val.path)] if val is not None else [])
    inter = pd.concat([read_parquet(p / "interactions.parquet") for p in parts],
                      ignore_index=True)
    ref, stats = build_reference(inter, read_parquet(base / "users.parquet"),
                                 read_parquet(base / "items.parquet"), max_rows, seed)
    write_reference(ref, stats, Path(reference.path))
    reference.metadata.update({"rows": len(ref), "features": list(stats["features"])})
