"""Validate: schema and range checks; a bad dataset stops the run before training."""


from kfp.dsl import Dataset, Input, Metrics, Output


def validate(dataset: Input[Dataset], validated: Output[Dataset], stats: Output[Metrics]) -> None:
    """Check the tables' schema, value ranges and references; a bad dataset stops the run.

    Raises DataValidationError (column, rule, bad rows, examples) on a bad dataset; otherwise
    passes the tables on unchanged.

    Args:
        dataset: The contract tables written by ingest.

    Returns:
        validated: The same tables (hard-linked where possible) with the same metadata.
        stats: Row counts of the interactions, users and items tables.
    """
    from pathlib import Path

    from components.common import link_tree
    from recsys.data.files import read_dataset
    from recsys.data.validate import validate_dataset

    ds = read_dataset(Path(dataset.path))
    validate_dataset(ds)
    link_tree(dataset.path, validated.path)
    validated.metadata.update(dict(dataset.metadata))
    stats.log_metric("interactions", len(ds.interactions))
    stats.log_metric("users", len(ds.users))
    stats.log_metric("items", len(ds.items))
