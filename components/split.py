"""Split: leakage-safe train/validation/test interactions."""


from kfp.dsl import Dataset, Input, Output


def split(dataset: Input[Dataset], train: Output[Dataset], val: Output[Dataset],
          test: Output[Dataset], mode: str = "user_temporal", test_frac: float = 0.2,
          val_frac: float = 0.1, seed: int = 42) -> None:
    """``mode``: ``user_temporal`` (each user's last events are held out, the ones
    before them are validation), ``temporal`` (global time cutoffs: no held-out event precedes
    a training event) or ``user_random``. Tuning sees validation, never test."""
    from pathlib import Path

    import pandas as pd

    from components.common import SPLIT_MODES
    from recsys.data.split import (per_user_random_split, per_user_temporal_split,
                                   temporal_split)

    inter = pd.read_parquet(Path(dataset.path) / "interactions.parquet")
    if mode == "temporal":
        parts = temporal_split(inter, val_frac=val_frac, test_frac=test_frac)
    elif mode == "user_temporal":
        parts = per_user_temporal_split(inter, test_frac=test_frac, val_frac=val_frac)
    elif mode == "user_random":
        parts = per_user_random_split(inter, test_frac=test_frac, seed=seed, val_frac=val_frac)
    else:
        raise ValueError(f"split mode {mode!r}: use one of {', '.join(SPLIT_MODES)}")
    tr, va, te = parts.train, parts.val, parts.test
    for art, frame in ((train, tr), (val, va), (test, te)):
        Path(art.path).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(Path(art.path) / "interactions.parquet", index=False)
        art.metadata.update({"rows": len(frame), "users": int(frame["user_id"].nunique()),
                             "mode": mode})
