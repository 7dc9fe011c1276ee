"""The drift check's configuration (``monitoring/drift/config.yaml``) as a typed record."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from monitoring.errors import MonitoringInputError

__all__ = ["DEFAULT_CONFIG", "MethodConfig", "FeatureConfig", "DriftConfig", "load_config"]

DEFAULT_CONFIG = Path(__file__).with_name("config.yaml")

Kind = Literal["numeric", "categorical"]


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str = Field(min_length=1)
    threshold: float = Field(ge=0)


class FeatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind
    method: str | None = None
    threshold: float | None = Field(None, ge=0)


class ResolvedFeature(BaseModel):
    name: str
    kind: Kind
    method: str
    threshold: float

    @property
    def column(self) -> str:
        """The payload-log column."""
        return f"f_{self.name}"


class PredictionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: MethodConfig = MethodConfig(method="wasserstein", threshold=0.1)
    item_popularity: MethodConfig = MethodConfig(method="wasserstein", threshold=0.1)
    genre_mix: MethodConfig = MethodConfig(method="jensenshannon", threshold=0.1)


class EmbeddingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["mmd", "distance", "model", "ratio"] = "mmd"
    threshold: float = Field(0.015, ge=0)
    sample_rows: int = Field(2000, ge=50)


class ReportConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidently: Literal["always", "on_drift", "never"] = Field(
        "never", description="When to render Evidently's report (6-10 s of CPU, mostly its "
        "import): on_drift renders it when the check finds drift, when someone will read it.")
    sample_rows: int = Field(10000, ge=100)


class DriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drift_share: float = Field(0.2, gt=0, le=1)
    # Fewer rows than this in the window is no verdict (exit 2, nothing published): two
    # requests of a quiet hour "drift" on every feature, and the alert would start a retrain.
    min_rows: int = Field(100, ge=1)
    defaults: dict[Kind, MethodConfig]
    features: dict[str, FeatureConfig] = Field(min_length=1)
    sample_rows: int = Field(200_000, ge=1000)
    exact_margin: float = Field(0.02, ge=0)
    seed: int = 0
    prediction: PredictionConfig = PredictionConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    report: ReportConfig = ReportConfig()

    @model_validator(mode="after")
    def _defaults_for_every_kind(self) -> DriftConfig:
        kinds = {f.kind for f in self.features.values()}
        missing = kinds - set(self.defaults)
        if missing:
            raise ValueError(f"defaults has no entry for {sorted(missing)}")
        return self

    def resolved(self) -> list[ResolvedFeature]:
        out = []
        for name, f in self.features.items():
            d = self.defaults[f.kind]
            out.append(ResolvedFeature(name=name, kind=f.kind, method=f.method or d.method,
                                       threshold=d.threshold if f.threshold is None
                                       else f.threshold))
        return out


def load_config(path: Path | str | None = None) -> DriftConfig:
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MonitoringInputError(f"config={str(path)!r}: {exc}") from exc
    try:
        return DriftConfig.model_validate(data)
    except ValidationError as exc:
        raise MonitoringInputError(f"config={str(path)!r}: {exc}") from exc
