"""Turns the component functions into KFP components on a configurable base image."""

from __future__ import annotations

from types import SimpleNamespace

from kfp import dsl

from components.evaluate import evaluate
from components.features import features
from components.ingest import ingest
from components.register import register
from components.split import split
from components.train import train
from components.tune import tune
from components.validate import validate

__all__ = ["FUNCTIONS", "DEFAULT_IMAGE", "build_components"]

DEFAULT_IMAGE = "ghcr.io/marquee-mlops/marquee-pipeline:0.1.0"
FUNCTIONS = {f.__name__: f for f in (ingest, validate, split, features, tune, train, evaluate,
                                     register)}


def build_components(base_image: str = DEFAULT_IMAGE) -> SimpleNamespace:
    """KFP components for every step. The image must already contain kfp and this project
    (``install_kfp_package=False``: no pip install at run time, see docker/Dockerfile)."""
    return SimpleNamespace(**{
        name: dsl.component(base_image=base_image, install_kfp_package=False)(fn)
        for name, fn in FUNCTIONS.items()
    })
