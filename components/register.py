"""Register: bundle the model with its reference profile, publish it, record it in the
registry with its lineage and move the aliases the gate allows."""


from kfp.dsl import Artifact, Dataset, Input, Model, Output


def register(dataset: Input[Dataset], model: Input[Model], reference: Input[Dataset],
             report: Input[Artifact], best_params: Input[Artifact], registered: Output[Artifact],
             run_id: str = "local", run_uid: str = "", store_uri: str = "",
             registry_uri: str = "", s3_endpoint_url: str = "", home: str = "") -> int:
    """Bundle and publish the model, register it with its lineage and move its alias.

    The first version becomes ``production``; a version that passes the gate becomes
    ``candidate``; a rejected one is registered with no alias. A model that evaluate found no
    production for, while one exists now (registered by another run since), fails the step
    unregistered: it was never gated against that production (and nothing is published when
    that is known before publishing).

    The step run again in the same pipeline run (a Kubeflow retry, same ``run_uid``) after
    its version was registered publishes and registers nothing more: it finishes that
    version's alias move and returns it.

    Args:
        dataset: The validated contract tables; their data fingerprint is recorded.
        model: The trained recommender, copied into the bundle.
        reference: The drift reference profile, copied into the bundle's reference/ with
            a prediction reference (top-10 recommendations of up to 2000 users).
        report: The evaluation report: the metrics registered and the gate decision.
        best_params: The search result of tune: its parameters recorded as the best_params
            tag, its summary as tuning.* tags (search ran or skipped, n_trials, completed,
            pruned, failed, best_value, best_trial).
        run_id: The pipeline run's name, recorded as pipeline_run_id in the bundle and
            the registry.
        run_uid: The pipeline run's id (in Kubeflow, the run id the retrain trigger follows and
            finds the version by), recorded as pipeline_run_uid; empty: not recorded.
        store_uri: Object store the bundle is published to: a directory or
            s3://bucket/prefix. Empty: the step's MARQUEE_STORE_URI, else
            <home>/store.
        registry_uri: MLflow tracking URI of the registry the version is registered in.
            Empty: the step's MARQUEE_REGISTRY_URI, else sqlite:///<home>/registry.db.
        s3_endpoint_url: S3 endpoint for an s3:// store (MinIO, …). Empty: the step's
            MARQUEE_S3_ENDPOINT_URL, else the AWS default.
        home: Marquee home directory, where the default store and registry are. Empty: the
            step's MARQUEE_HOME, else .marquee.

    Returns:
        registered: JSON with the version number, the bundle URI and the gate decision.
        Output: The registered version number.
    """
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from components.common import link_tree, read_json, settings_from, write_json
    from marquee.gate import GateDecision
    from marquee.bundle import code_revision, finalize_bundle, new_bundle_version, publish_bundle
    from marquee.registry import Registry
    from marquee.store import open_store
    from recsys.recommender import Recommender
    from recsys.reference import prediction_reference

    settings = settings_from(store_uri, registry_uri, s3_endpoint_url, home)
    evaluation = read_json(report.path)
    gate = evaluation["gate"]
    tuned = read_json(best_params.path)
    registry = Registry(settings.resolved_registry_uri, settings.model_name)

    def check_first(own: int | None, published: str = "") -> None:
        if gate["decision"] != "promoted-first":
            return
        # evaluate found no production; another run may have registered one since. This
        # model was never compared with it, so it must not take its place (nor be
        # registered as if it were the first).
        production = registry.get_alias("production")
        if production is not None and production.version != own:
            left = f" (its bundle stays unregistered at {published})" if published else ""
            raise RuntimeError(
                f"{settings.model_name} version {production.version} became production "
                "after this run's evaluation found none, so this model was not gated "
                f"against it and is not registered{left}: run the pipeline again to gate it")

    def move_alias(number: int) -> None:
        if gate["decision"] == "promoted-first":
            registry.promote(number)
        elif gate["decision"] == "candidate":
            registry.set_alias("candidate", number)

    # this step run again in the same run (a Kubeflow retry keeps the run's id and name)
    # after it had registered, then failed: a second bundle and a second version of the one
    # model were registered, the first left without its alias. Both must match: kfp.local's
    # run id is a random 8-digit number, its name holds the start time.
    earlier = [v for v in registry.list_versions()
               if v.tags.get("pipeline_run_uid") == run_uid
               and v.tags.get("pipeline_run_id") == run_id] if run_uid else []
    if earlier:
        number, uri = earlier[-1].version, earlier[-1].bundle_uri
        with registry.exclusive():
            check_first(number)
            if not registry.get_version(number).aliases:  # moved by the first try, or later
                move_alias(number)
        write_json(registered.path, {"version": number, "bundle_uri": uri, "gate": gate})
        registered.metadata.update({"version": number, "bundle_uri": uri,
                                    "gate": gate["decision"]})
        return number
    check_first(None)  # before publishing: a model refused here leaves no bundle behind
    version = new_bundle_version()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        link_tree(model.path, bundle)
        link_tree(reference.path, bundle / "reference")
        rec = Recommender.load(bundle)
        users = rec.users["user_id"].to_numpy()[:2000]
        prediction_reference(rec, users).to_parquet(bundle / "reference" / "predictions.parquet",
                                                    index=False)
        metrics = {k: float(v) for k, v in evaluation["metrics"].items()}
        manifest = finalize_bundle(
            bundle, settings.model_name, version, rec.config.model_dump(),
            dataset.metadata.get("fingerprint", ""), metrics,
            code_revision=settings.code_revision or code_revision(), pipeline_run_id=run_id)
        store = open_store(settings.resolved_store_uri, settings.s3_endpoint_url,
                           create_bucket=True)
        uri = publish_bundle(store, bundle, settings.model_name, version)
        shutil.rmtree(bundle, ignore_errors=True)
    tags = {"data_fingerprint": manifest.data_fingerprint,
            "params": json.dumps(manifest.training_config, sort_keys=True),
            "best_params": json.dumps(tuned.get("params", {}), sort_keys=True),
            "code_revision": manifest.code_revision, "pipeline_run_id": run_id}
    if run_uid:
        tags["pipeline_run_uid"] = run_uid
    # the search behind best_params: how much of it ran (``{}`` alone cannot say whether a
    # search ran, nor how many of its trials completed)
    searched = int(tuned.get("n_trials") or 0) > 0
    tags["tuning.search"] = "ran" if searched else "skipped (n_trials=0)"
    if searched:
        tags.update({f"tuning.{key}": str(tuned.get(key)) for key in (
            "n_trials", "completed", "pruned", "failed", "best_value", "best_trial")})
    tags.update(GateDecision.model_validate(gate).tags())
    # the check, the registration and the promotion in one turn (on a SQLite registry): two
    # runs that both found no production both passed the check, and both became
    # "promoted-first", the second over the first without ever being gated against it
    with registry.exclusive():
        check_first(None, uri)
        number = registry.register(uri, {k: v for k, v in metrics.items()
                                         if "." not in k or k.endswith(".cold")}, tags)
        move_alias(number)
    write_json(registered.path, {"version": number, "bundle_uri": uri, "gate": gate})
    registered.metadata.update({"version": number, "bundle_uri": uri,
                                "gate": gate["decision"]})
    return number
