"""Ingest: raw movie events, users and movies → the contract tables, personal data coarsened."""


from kfp.dsl import Dataset, Output


def ingest(source: str, dataset: Output[Dataset], home: str = "", seed: int = 42,
           split_mode: str = "user_temporal", test_frac: float = 0.2, val_frac: float = 0.1,
           n_trials: int = 0, tune_timeout_seconds: int = 600, config_json: str = "{}",
           gate_tolerance: float = -1.0, reference_rows: int = 100_000, store_uri: str = "",
           registry_uri: str = "", s3_endpoint_url: str = "") -> None:
    """Check the run's parameters, read ``source`` and write the interactions, users and
    items tables as Parquet.

    The parameters that later steps consume are checked here first
    (``components.common.check_params``, the rules the client applies before it submits): a
    run started from the Kubeflow UI skips the client, and a typo must fail this step, naming
    the parameter, not a later one after training or after the store was written to.

    Raw ages and zip codes never leave this step: they are coarsened to buckets and regions.

    Args:
        source: movielens-100k (downloaded once and cached under the home directory),
            movielens-100k:<dir or zip> (a GroupLens or RecBole copy the user provides),
            synth:users=N,items=N,events=N[,seed=N] (the synthetic generator; 2000 users,
            1000 items and 50000 events unless given), a directory holding the contract
            tables as .parquet, .csv or .tsv (coerced and checked on the way in), or
            s3://bucket/prefix holding them as such a directory does (downloaded through
            s3_endpoint_url with the step's own S3 credentials, then read as a directory;
            MARQUEE_S3_SOURCE_MAX_BYTES bounds the download, 2 GiB unless set).
        home: Marquee home directory; MovieLens is cached under its data/movielens-100k.
            Empty: the step's MARQUEE_HOME, else .marquee.
        seed: Seed of the synthetic generator when source does not set seed=; the run's seed,
            0 or more.
        split_mode: The split step's mode, checked: user_temporal, temporal or user_random.
        test_frac: The split step's test share, checked: in (0, 1).
        val_frac: The split step's validation share, checked: in [0, 1), test_frac + val_frac
            below 1, above 0 when n_trials > 0.
        n_trials: The tune step's trial count, checked: 0 or more.
        tune_timeout_seconds: The tune step's time budget in seconds, checked: 1 or more.
        config_json: The recommender settings of tune and train, checked: a JSON object of
            settings and values the recommender takes.
        gate_tolerance: The evaluate step's gate tolerance, checked: 0 to 1, or negative
            for the step's MARQUEE_GATE_TOLERANCE.
        reference_rows: The features step's sample size, checked: 1 or more.
        store_uri: The register step's object store, checked: a directory, file:///dir or
            s3://bucket/prefix. Empty: the step's MARQUEE_STORE_URI.
        registry_uri: The registry's MLflow tracking URI, checked: http(s)://host, sqlite:///,
            a database URI or a path. Empty: the step's MARQUEE_REGISTRY_URI.
        s3_endpoint_url: The S3 endpoint of evaluate and register, checked: http(s)://host.
            Empty: the step's MARQUEE_S3_ENDPOINT_URL.

    Returns:
        dataset: The contract tables as Parquet; its metadata holds the data fingerprint, the
            source and the row counts.
    """
    from pathlib import Path

    from components.common import check_params, settings_from
    from recsys.data.files import write_dataset

    check_params(source=source, split_mode=split_mode, test_frac=test_frac, val_frac=val_frac,
                 n_trials=n_trials, tune_timeout_seconds=tune_timeout_seconds,
                 config_json=config_json, gate_tolerance=gate_tolerance,
                 reference_rows=reference_rows, seed=seed, store_uri=store_uri,
                 registry_uri=registry_uri, s3_endpoint_url=s3_endpoint_url, home=home)
    kind, _, arg = source.partition(":")
    if kind == "movielens-100k":
        from recsys.data.fetch import fetch_movielens_100k
        from recsys.data.ingest import ingest as coarsen

        settings = settings_from(home=home)
        raw = fetch_movielens_100k(settings.movielens_cache_dir, Path(arg) if arg else None)
        ds = coarsen(raw)
    elif kind == "synth":
        from recsys.data.synth import generate

        opts = {k: int(v) for k, v in (p.split("=") for p in arg.split(",") if p)}  # checked
        ds = generate(opts.get("users", 2000), opts.get("items", 1000),
                      opts.get("events", 50_000), seed=opts.get("seed", seed))
    elif source.startswith("s3://"):
        from components.common import read_s3_source

        ds = read_s3_source(source, settings_from(s3_endpoint_url=s3_endpoint_url,
                                                  home=home).s3_endpoint_url)
    elif Path(source).is_dir():
        from recsys.data.validate import validate_directory

        ds = validate_directory(Path(source))
    else:
        raise ValueError(f"source {source!r} is neither movielens-100k[:path], synth:…, "
                         "s3://bucket/prefix nor an existing directory")
    write_dataset(ds, Path(dataset.path))
    dataset.metadata.update({"fingerprint": ds.fingerprint(), "source": source,
                             "interactions": len(ds.interactions), "users": len(ds.users),
                             "items": len(ds.items)})
