"""Split: leakage-safe train/validation/test interactions."""


from kfp.dsl import Dataset, Input, Output


def split(dataset: Input[Dataset], train: Output[Dataset], val: Output[Dataset],
          test: Output[Dataset], mode: str = "user_temporal", test_frac: float = 0.2,
          val_frac: float = 0.1, seed: int = 42) -> None:
    """Split the interactions into leakage-safe train, validation and test parts.

    Tuning sees validation, never test. In the per-user modes a user with fewer than 3 events
    stays entirely in train. A split that holds out no test events fails the step (nothing to
    evaluate the model on).

    Args:
        dataset: The validated contract tables; only the interactions are split.
        mode: user_temporal (each user's last events are held out, the ones before them
            are validation), temporal (global time cutoffs: no held-out event precedes a
            training event) or user_random (a seeded random draw per user).
        test_frac: Share of the events held out for test (per user in the user_* modes),
            in [0, 1).
        val_frac: Share of the events held out for validation, in [0, 1); test_frac +
            val_frac must be below 1.
        seed: Seed of the user_random draw; the other modes do not use it.

    Returns:
        train: The training interactions (interactions.parquet).
        val: The validation interactions (interactions.parquet).
        test: The test interactions (interactions.parquet).
    """
    from pathlib import Path


    from components.common import check_params
    from recsys.data.parquet import read_parquet
    from recsys.data.split import (per_user_random_split, per_user_temporal_split,
                                   temporal_split)

    check_params(split_mode=mode)  # ingest checked it; this step may run on its own
    inter = read_parquet(Path(dataset.path) / "interactions.parquet")
    if mode == "temporal":
        parts = temporal_split(inter, val_frac=val_frac, test_frac=test_frac)
    elif mode == "user_temporal":
        parts = per_user_temporal_split(inter, test_frac=test_frac, val_frac=val_frac)
    else:
        parts = per_user_random_split(inter, test_frac=test_frac, seed=seed, val_frac=val_frac)
    tr, va, te = parts.train, parts.val, parts.test
    if len(te) == 0:  # fail before training: evaluate could not score the model on nothing
        raise ValueError(
            f"split mode {mode!r} with test_frac={test_frac} held out no test events from "
            f"{len(inter)} events of {inter['user_id'].nunique()} users: the model could not be "
            "evaluated or gated (use test_frac > 0; in the per-user modes only users with 3 or "
            "more events give test events)")
    for art, frame in ((train, tr), (val, va), (test, te)):
        Path(art.path).mkdir(parents=True, exist_ok=True)
        frame.to_parquet(Path(art.path) / "interactions.parquet", index=False)
        art.metadata.update({"rows": len(frame), "users": int(frame["user_id"].nunique()),
                             "mode": mode})
