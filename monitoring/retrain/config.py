"""Settings of the retrain trigger (``MARQUEE_RETRAIN_*``), built in ``main()``.

These belong to the trigger deployable only; the shared ones (home, model name, Kubeflow
host, Alertmanager URL, bind host) come from ``marquee.settings.Settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from marquee.settings import Settings
from monitoring.errors import MonitoringInputError
from monitoring.retrain.launcher import (
    CommandLauncher,
    KfpLocalLauncher,
    KubeflowLauncher,
    PipelineLauncher,
)
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

__all__ = ["TriggerSettings", "make_launcher", "make_trigger", "state_dir"]


class TriggerSettings(BaseSettings):
    """The webhook's own knobs; mirrored by the chart's ``retrainTrigger.*`` values."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_RETRAIN_", extra="ignore")

    token: SecretStr | None = Field(None, description="Bearer token Alertmanager and on-call "
                                    "present. Prefer token_file.")
    token_file: Path | None = Field(None, description="File holding the bearer token (the "
                                    "same file Alertmanager's credentials_file reads).")
    port: int = Field(8095, ge=1, le=65535, description="Port of `marquee trigger`.")
    url: str = Field("http://127.0.0.1:8095", description="Where `marquee retrain` and "
                     "`marquee incidents` reach the trigger.")
    cooldown_seconds: float = Field(6 * 3600, ge=0, description="Minimum time between two "
                                    "runs started for the same model.")
    dedup_ttl_seconds: float = Field(7 * 86400, gt=0, description="How long a (fingerprint, "
                                     "startsAt) pair is remembered.")
    launcher: Literal["auto", "kfp-local", "kubeflow", "command"] = Field(
        "auto", description="auto = kubeflow when settings.kubeflow_host is set, else kfp-local.")
    command: list[str] = Field(default_factory=list, description="argv of the command "
                               "launcher (JSON list in the environment).")
    pipeline_params: dict[str, Any] = Field(default_factory=dict, description="Parameters "
                                            "passed to the training pipeline.")

    def read_token(self) -> str:
        """The bearer token; raise when none is configured (the trigger never runs open)."""
        if self.token is not None and self.token.get_secret_value().strip():
            return self.token.get_secret_value().strip()
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise MonitoringInputError(f"token_file={str(self.token_file)!r}: {exc}") from exc
            if token:
                return token
            raise MonitoringInputError(f"token_file={str(self.token_file)!r}: the file is empty")
        raise MonitoringInputError("no bearer token: set MARQUEE_RETRAIN_TOKEN_FILE (or "
                                   "MARQUEE_RETRAIN_TOKEN)")


def state_dir(settings: Settings) -> Path:
    return settings.home / "retrain"


def make_launcher(settings: Settings, ts: TriggerSettings) -> PipelineLauncher:
    kind = ts.launcher
    if kind == "auto":
        kind = "kubeflow" if settings.kubeflow_host else "kfp-local"
    if kind == "kubeflow":
        return KubeflowLauncher(settings, ts.pipeline_params)
    if kind == "command":
        return CommandLauncher(ts.command)
    return KfpLocalLauncher(settings, ts.pipeline_params)


def make_trigger(settings: Settings, ts: TriggerSettings,
                 launcher: PipelineLauncher | None = None) -> RetrainTrigger:
    return RetrainTrigger(
        StateStore(state_dir(settings)),
        launcher or make_launcher(settings, ts),
        default_model=settings.model_name,
        cooldown_seconds=ts.cooldown_seconds,
        dedup_ttl_seconds=ts.dedup_ttl_seconds,
        pipeline_params=ts.pipeline_params,
    )
