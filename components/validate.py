"""Validate: schema and range checks; a bad dataset stops the run before training."""


from kfp.dsl import Dataset, Input, Metrics, Output


def validate(dataset: Input[Dataset], validated: Output[Dataset], stats: Output[Metrics]) -> None:
    """Raise DataValidationError (column, rule, bad rows, examples) on a bad dataset;
    otherwise pass the tables on unchanged."""
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
