"""Typed settings for every Marquee deployable.

Built once in ``main()`` (never at import time) and passed down. Every field reads from an
environment variable with the ``MARQUEE_`` prefix (``MARQUEE_HOME``, ``MARQUEE_STORE_URI`` …)
and is mirrored one to one by a documented Helm value.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "MODEL_NAME", "NAME_PATTERN"]

MODEL_NAME = "movie-recommender"
#: A model name (and a bundle's name or version): one path segment of the object store, which
#: the registry's filters and the bundle format both accept.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Settings(BaseSettings):
    """Where Marquee keeps its state and which services it talks to."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_", extra="ignore")

    home: Path = Field(Path(".marquee"), description="Local state: caches, SQLite registry, runs.")
    store_uri: str | None = Field(
        None,
        description="Object store: a local directory or s3://bucket/prefix. Default: <home>/store.",
    )
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, moto, …).")
    registry_uri: str | None = Field(
        None, description="MLflow tracking/registry URI. Default: sqlite under <home>."
    )
    model_name: str = Field(MODEL_NAME, pattern=NAME_PATTERN, description=(
        "Registered model name: letters, digits, '.', '_' and '-', up to 128 characters (it "
        "names the bundles' directory in the store)."))
    kubeflow_host: str | None = Field(None, description="Kubeflow Pipelines API endpoint.")
    pipeline_image: str = Field(
        "ghcr.io/marquee-mlops/marquee-pipeline:0.1.0",
        description="Base image that pipeline components run on in a cluster.",
    )
    prometheus_url: str | None = Field(None, description="Prometheus HTTP API for analysis.")
    alertmanager_url: str | None = Field(None, description="Alertmanager API for incidents.")
    pushgateway_url: str | None = Field(
        None, description="Pushgateway the drift and skew checks push their gauges to "
        "(their --pushgateway default).")
    namespace: str | None = Field(
        None, validation_alias=AliasChoices("MARQUEE_NAMESPACE", "POD_NAMESPACE"),
        description="Kubernetes namespace of this deployable (the chart sets POD_NAMESPACE "
        "from the pod); pushed gauges are grouped by it, so they keep it in Prometheus.")
    code_revision: str | None = Field(
        None, description="Code revision recorded with each model (images have no .git).")
    bind_host: str = Field("127.0.0.1", description="Address servers bind to.")
    gate_tolerance: float = Field(
        0.02, ge=0.0, le=1.0, description="Relative NDCG@10 drop still accepted by the gate."
    )
    seed: int = Field(42, description="Global random seed for training.")

    @field_validator("home", mode="before")
    @classmethod
    def _check_home(cls, v: object) -> object:
        # Path("") is ".": an empty MARQUEE_HOME would silently put state (a new, empty
        # registry) in whatever directory the command runs in
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty (it would mean the current directory)")
        return v

    @field_validator("model_name", "bind_host", mode="before")
    @classmethod
    def _not_empty(cls, v: object) -> object:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("s3_endpoint_url")
    @classmethod
    def _check_s3_endpoint_url(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None  # empty means AWS S3 (the chart's settings.s3EndpointUrl)
        if v is not None and (urlparse(v).scheme not in ("http", "https")
                              or not urlparse(v).hostname):  # "http://", "localhost:9000"
            raise ValueError("s3_endpoint_url must be an http:// or https:// URL")
        return v

    @field_validator("store_uri")
    @classmethod
    def _check_store_uri(cls, v: str | None) -> str | None:
        if v is not None and "://" in v and not v.startswith(("s3://", "file://")):
            raise ValueError("store_uri must be a directory or s3://bucket/prefix")
        if v is not None and v.startswith("s3://") and not urlparse(v).netloc:
            # refused by the store only when the register step publishes, after training
            raise ValueError("store_uri must name a bucket: s3://bucket/prefix")
        return v

    # Derived locations -------------------------------------------------------------
    @property
    def resolved_store_uri(self) -> str:
        return self.store_uri or str((self.home / "store").resolve())

    @property
    def resolved_registry_uri(self) -> str:
        if self.registry_uri:
            return self.registry_uri
        return f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def movielens_cache_dir(self) -> Path:
        """Where MovieLens-100k is cached once fetched: by ``marquee data fetch`` and by the
        pipeline's ingest step alike, so that a copy given with ``--source`` feeds both."""
        return self.data_dir / "movielens-100k"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"
