"""Settings of the retrain trigger (``MARQUEE_RETRAIN_*``), built in ``main()``.

These belong to the trigger deployable only; the shared ones (home, model name, Kubeflow
host, Alertmanager URL, bind host) come from ``marquee.settings.Settings``.
"""

from __future__ import annotations

from collections.abc import Callable
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
from monitoring.retrain.cluster import ClusterAutoRollout
from monitoring.retrain.models import Decision, RunRecord
from monitoring.retrain.rollout import AutoRollout
from monitoring.retrain.state import StateStore
from monitoring.retrain.trigger import RetrainTrigger

__all__ = ["TriggerSettings", "make_launcher", "make_trigger", "make_auto_rollout", "state_dir"]


class TriggerSettings(BaseSettings):
    """The webhook's own knobs; mirrored by the chart's ``retrainTrigger.*`` values."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_RETRAIN_", extra="ignore")

    token: SecretStr | None = Field(None, description="Bearer token Alertmanager and on-call "
                                    "present. Prefer token_file.")
    token_file: Path | None = Field(None, description="File holding the bearer token (the "
                                    "same file Alertmanager's credentials_file reads).")
    port: int = Field(8095, ge=1, le=65535, description="Port of `marquee trigger`.")
    url: str = Field("http://127.0.0.1:8095", pattern=r"^https?://\S+$",
                     description="Where `marquee retrain` and "
                     "`marquee incidents` reach the trigger.")
    cooldown_seconds: float = Field(6 * 3600, ge=0, description="Minimum time between two "
                                    "runs started for the same model.")
    dedup_ttl_seconds: float = Field(7 * 86400, gt=0, description="How long a (fingerprint, "
                                     "startsAt) pair is remembered.")
    launcher: Literal["auto", "kfp-local", "kubeflow", "command"] = Field(
        "auto", description="auto = kubeflow when settings.kubeflow_host is set, else kfp-local.")
    command: list[str] = Field(default_factory=list, description="argv of the command "
                               "launcher (JSON list in the environment).")
    command_timeout_seconds: float = Field(12 * 3600, gt=0, description="How long the "
                                           "child of the command or kfp-local launcher may "
                                           "run before its process group is killed and the "
                                           "run fails.")
    pipeline_params: dict[str, Any] = Field(default_factory=dict, description="Parameters "
                                            "passed to the training pipeline.")
    auto_rollout: Literal["shadow", "none"] = Field(
        "shadow", description="After a run whose model passes the gate (decision candidate): "
        "start a shadow rollout of it (shadow) or do nothing (none).")
    router_url: str = Field("http://127.0.0.1:8090", description="Router whose admin API the "
                            "automatic rollout uses (as `marquee rollout start --router`).")
    rollout_spec: dict[str, Any] = Field(
        default_factory=dict, description="ModelRollout spec fields (JSON, camelCase) merged "
        "over the automatic shadow rollout: intervalSeconds, shadow, steps, analysis, ...")
    candidate_url_template: str | None = Field(
        None, description="URL of a version's model server with {version}, when one already "
        "runs there (e.g. a KServe predictor); unset: the trigger starts `marquee serve` for "
        "the candidate on the bind host.")
    server_ready_timeout_seconds: float = Field(
        180.0, gt=0, description="How long a candidate's model server may take to be ready.")
    rollout_target: Literal["local", "kubernetes"] = Field(
        "local", description="Where the automatic rollout acts: local = start the candidate's "
        "`marquee serve` and `marquee rollout start` here; kubernetes = create the candidate's "
        "InferenceService and a ModelRollout object in `namespace`.")
    namespace: str = Field("", description="Namespace of the InferenceService and ModelRollout "
                           "(rollout_target=kubernetes).")
    inference_service_template: Path | None = Field(
        None, description="File with the candidate's InferenceService, __MARQUEE_VERSION__ "
        "where the version goes (rollout_target=kubernetes; the chart mounts it).")
    kubeflow_wait: bool = Field(True, description="Follow a submitted Kubeflow run until it "
                                "ends (and roll out the version it registers); false: a run "
                                "ends at submission.")
    kubeflow_timeout_seconds: float = Field(12 * 3600, gt=0, description="How long a Kubeflow "
                                            "run is followed before it counts as failed.")
    kubeflow_poll_seconds: float = Field(30.0, gt=0, description="Interval between two reads "
                                         "of a followed Kubeflow run's state.")
    kubeflow_create_grace_seconds: float = Field(
        300.0, ge=0, description="After a submission Kubeflow did not answer, how long the "
        "run is looked for by its name (every kubeflow_poll_seconds) before it counts as "
        "failed: Kubeflow may create it late. 0: one look.")

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
    """The launcher ``ts.launcher`` names. For the pipeline launchers, ``pipeline_params``
    are checked here, at start-up, as a run would check them: a typo stops the trigger with
    an error naming the setting, instead of failing every retraining run it starts."""
    kind = ts.launcher
    if kind == "auto":
        kind = "kubeflow" if settings.kubeflow_host else "kfp-local"
    if kind == "command":
        return CommandLauncher(ts.command, timeout_seconds=ts.command_timeout_seconds)
    from marquee.errors import InvalidArgumentError
    from pipelines.run import check_arguments

    try:
        check_arguments(dict(ts.pipeline_params))
    except InvalidArgumentError as exc:
        raise MonitoringInputError(
            f"pipeline_params (MARQUEE_RETRAIN_PIPELINE_PARAMS): {exc}") from None
    if kind == "kubeflow":
        return KubeflowLauncher(settings, ts.pipeline_params, wait=ts.kubeflow_wait,
                                timeout_seconds=ts.kubeflow_timeout_seconds,
                                poll_seconds=ts.kubeflow_poll_seconds,
                                create_grace_seconds=ts.kubeflow_create_grace_seconds)
    return KfpLocalLauncher(settings, ts.pipeline_params,
                            timeout_seconds=ts.command_timeout_seconds)


def make_auto_rollout(settings: Settings, ts: TriggerSettings,
                      api: Any = None) -> AutoRollout | ClusterAutoRollout:
    """The after-run step for ``ts.rollout_target``; ``api`` (a ``CustomObjectsApi``) defaults
    to the in-cluster service account's, else the kubeconfig's."""
    if ts.rollout_target == "kubernetes":
        if ts.auto_rollout != "none" and ts.inference_service_template is None:
            raise MonitoringInputError("rollout_target=kubernetes needs "
                                       "MARQUEE_RETRAIN_INFERENCE_SERVICE_TEMPLATE")
        if api is None:
            from kubernetes import client

            from serving.rollout.store import load_kube_config

            load_kube_config()
            api = client.CustomObjectsApi()
        kw = dict(api=api, namespace=ts.namespace, model_name=settings.model_name,
                  mode=ts.auto_rollout, spec_overrides=ts.rollout_spec,
                  server_ready_timeout=ts.server_ready_timeout_seconds)
        try:
            if ts.inference_service_template is None:  # auto_rollout none: never used
                return ClusterAutoRollout(template="", **kw)
            return ClusterAutoRollout.from_template_file(ts.inference_service_template, **kw)
        except ValueError as exc:
            raise MonitoringInputError(str(exc)) from exc
    return AutoRollout(home=settings.home, model_name=settings.model_name,
                       router_url=ts.router_url, mode=ts.auto_rollout,
                       spec_overrides=ts.rollout_spec,
                       candidate_url_template=ts.candidate_url_template,
                       bind_host=settings.bind_host,
                       server_ready_timeout=ts.server_ready_timeout_seconds)


def make_trigger(settings: Settings, ts: TriggerSettings,
                 launcher: PipelineLauncher | None = None,
                 after_run: Callable[[RunRecord], Decision | None] | None | bool = True,
                 ) -> RetrainTrigger:
    """The trigger; ``after_run=True`` adds the automatic rollout (``ts.auto_rollout``),
    ``False``/``None`` leaves it out (a short-lived process could not keep it running)."""
    if after_run is True:
        after_run = make_auto_rollout(settings, ts)
    return RetrainTrigger(
        StateStore(state_dir(settings)),
        launcher or make_launcher(settings, ts),
        default_model=settings.model_name,
        cooldown_seconds=ts.cooldown_seconds,
        dedup_ttl_seconds=ts.dedup_ttl_seconds,
        pipeline_params=ts.pipeline_params,
        after_run=after_run or None,
    )
