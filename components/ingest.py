"""Ingest: raw movie events, users and movies → the contract tables, personal data coarsened."""


from kfp.dsl import Dataset, Output


def ingest(source: str, dataset: Output[Dataset], home: str = "", seed: int = 42) -> None:
    """Read ``source`` and write the interactions, users and items tables as Parquet.

    Raw ages and zip codes never leave this step: they are coarsened to buckets and regions.

    Args:
        source: movielens-100k (downloaded once and cached under the home directory),
            movielens-100k:<dir or zip> (a GroupLens or RecBole copy the user provides),
            synth:users=N,items=N,events=N[,seed=N] (the synthetic generator; 2000 users,
            1000 items and 50000 events unless given) or a directory holding the contract
            tables as .parquet, .csv or .tsv (coerced and checked on the way in).
        home: Marquee home directory; MovieLens is cached under its data/movielens-100k.
            Empty: the step's MARQUEE_HOME, else .marquee.
        seed: Seed of the synthetic generator when source does not set seed=.

    Returns:
        dataset: The contract tables as Parquet; its metadata holds the data fingerprint, the
            source and the row counts.
    """
    from pathlib import Path

    from components.common import settings_from
    from recsys.data.files import write_dataset

    kind, _, arg = source.partition(":")
    if kind == "movielens-100k":
        from recsys.data.fetch import fetch_movielens_100k
        from recsys.data.ingest import ingest as coarsen

        settings = settings_from(home=home)
        raw = fetch_movielens_100k(settings.movielens_cache_dir, Path(arg) if arg else None)
        ds = coarsen(raw)
    elif kind == "synth":
        from recsys.data.synth import generate

        opts = {k: int(v) for k, v in (p.split("=") for p in arg.split(",") if p)}
        unknown = set(opts) - {"users", "items", "events", "seed"}
        if unknown:
            raise ValueError(f"source {source!r}: unknown synth option(s) {sorted(unknown)}; "
                             "use users=, items=, events=, seed=")
        ds = generate(opts.get("users", 2000), opts.get("items", 1000),
                      opts.get("events", 50_000), seed=opts.get("seed", seed))
    elif Path(source).is_dir():
        from recsys.data.validate import validate_directory

        ds = validate_directory(Path(source))
    else:
        raise ValueError(f"source {source!r} is neither movielens-100k[:path], synth:… "
                         "nor an existing directory")
    write_dataset(ds, Path(dataset.path))
    dataset.metadata.update({"fingerprint": ds.fingerprint(), "source": source,
                             "interactions": len(ds.interactions), "users": len(ds.users),
                             "items": len(ds.items)})
