"""Ingest: raw movie events, users and movies → the contract tables, personal data coarsened."""


from kfp.dsl import Dataset, Output


def ingest(source: str, dataset: Output[Dataset], home: str = "", seed: int = 42) -> None:
    """Read ``source`` and write interactions/users/items Parquet into ``dataset``.

    ``source``: ``movielens-100k`` (fetched and cached under the home directory),
    ``movielens-100k:<dir or zip>`` (a GroupLens or RecBole copy the user provides),
    ``synth:users=N,items=N,events=N[,seed=N]`` (the synthetic generator), or a directory
    holding contract tables as CSV or Parquet (coerced and checked on the way in).
    Raw ages and zip codes never leave this step: they are coarsened to buckets and regions.
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
