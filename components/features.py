"""Features: the drift reference profile of the serving feature vector, from training data."""


from kfp.dsl import Dataset, Input, Output


def features(dataset: Input[Dataset], train: Input[Dataset], reference: Output[Dataset],
             max_rows: int = 100_000, seed: int = 42) -> None:
    """A bounded sample (≤ ``max_rows``) of FEATURE_SPEC vectors as a request would see them
    at training time, plus per-feature statistics, so monitoring never reloads training data."""
    from pathlib import Path

    import pandas as pd

    from recsys.reference import build_reference, write_reference

    base = Path(dataset.path)
    ref, stats = build_reference(pd.read_parquet(Path(train.path) / "interactions.parquet"),
                                 pd.read_parquet(base / "users.parquet"),
                                 pd.read_parquet(base / "items.parquet"), max_rows, seed)
    write_reference(ref, stats, Path(reference.path))
    reference.metadata.update({"rows": len(ref), "features": list(stats["features"])})
