"""Evaluate + gate: offline metrics on the test split, compared with production's."""


from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output


def evaluate(dataset: Input[Dataset], train: Input[Dataset], val: Input[Dataset],
             test: Input[Dataset], model: Input[Model], scores: Output[Metrics],
             report: Output[Artifact], tolerance: float = -1.0, store_uri: str = "",
             registry_uri: str = "", s3_endpoint_url: str = "", home: str = "") -> None:
    """Score the model on the test split and gate it against the registry's production version.

    Recall/NDCG/MAP/precision/hit-rate at 10 and 50, MRR, coverage and novelty, per segment
    (cold, warm, heavy); the ``production`` version is scored on the same split. The gate
    passes when the model's NDCG@10 is at least production's × (1 − tolerance); with no
    production version the decision is ``promoted-first``. An empty test split fails the step
    (an unscored model passes no gate).

    Args:
        dataset: The validated contract tables (users and items are read from it).
        train: The training interactions: with val, the events the model has seen, which set
            each test user's segment (cold: fewer than 5, heavy: 100 or more) and item
            popularity for novelty.
        val: The validation interactions (seen events too).
        test: The held-out interactions the recommendations are scored against.
        model: The trained recommender.
        tolerance: Relative NDCG@10 drop from production still accepted, 0 to 1 (0.02: up to
            2 % worse). Negative: the step's MARQUEE_GATE_TOLERANCE setting (0.02 unless set).
        store_uri: Object store setting; not used by this step (the production bundle is
            fetched from the URI its registry version records).
        registry_uri: MLflow tracking URI of the registry that holds the production version.
            Empty: the step's MARQUEE_REGISTRY_URI, else sqlite:///<home>/registry.db.
        s3_endpoint_url: S3 endpoint for fetching an s3:// production bundle. Empty: the
            step's MARQUEE_S3_ENDPOINT_URL, else the AWS default.
        home: Marquee home directory, where the default registry is. Empty: the step's
            MARQUEE_HOME, else .marquee.

    Returns:
        scores: The headline metrics and gate_passed.
        report: JSON with every metric, production's metrics (null without a production
            version) and the gate decision.
    """
    import tempfile
    from pathlib import Path

    from components.common import read_tables, settings_from, write_json
    from marquee.bundle import fetch_bundle
    from marquee.gate import decide, resolve_tolerance
    from marquee.registry import Registry
    from recsys.metrics import evaluate as offline_metrics
    from recsys.recommender import Recommender

    settings = settings_from(store_uri, registry_uri, s3_endpoint_url, home)
    tol = resolve_tolerance(tolerance, settings.gate_tolerance)  # before any scoring
    seen, users, items = read_tables(dataset.path, train.path, val.path)
    truth, _, _ = read_tables(dataset.path, test.path)
    test_users = truth["user_id"].unique()
    if len(test_users) == 0:  # NDCG@10 would be 0 for both models, and 0 >= 0 passes the gate
        raise ValueError(
            "the test split holds no events, so the model cannot be scored and must not pass "
            "the gate: hold events out with test_frac > 0 (in the per-user split modes only "
            "users with 3 or more events give test events)")

    def score(rec: Recommender) -> dict[str, float]:
        return offline_metrics(rec.recommend(test_users, k=50), truth, seen, (10, 50),
                               n_items=len(items))

    metrics = score(Recommender.load(Path(model.path)))
    registry = Registry(settings.resolved_registry_uri, settings.model_name)
    production = registry.get_alias("production")
    prod_metrics = None
    if production is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path, _ = fetch_bundle(production.bundle_uri, Path(tmp) / "bundle",
                                   s3_endpoint_url=settings.s3_endpoint_url)
            prod_metrics = score(Recommender.load(path))
    gate = decide(metrics["ndcg_at_10"], prod_metrics["ndcg_at_10"] if prod_metrics else None,
                  tol, production.version if production else None)
    for name in ("ndcg_at_10", "recall_at_10", "recall_at_50", "map_at_10", "mrr",
                 "precision_at_10", "coverage_at_10", "novelty_at_10", "ndcg_at_10.cold"):
        if name in metrics:
            scores.log_metric(name.replace(".", "_"), round(metrics[name], 6))
    scores.log_metric("gate_passed", gate.decision != "rejected")
    write_json(report.path, {"metrics": metrics, "production_metrics": prod_metrics,
                             "gate": gate.model_dump()})
    report.metadata.update({"gate": gate.decision, "ndcg_at_10": metrics["ndcg_at_10"]})
