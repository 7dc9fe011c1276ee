"""Typed settings of the router (built in ``main()``, passed down; Helm values ``router.*``).

Every field reads ``MARQUEE_ROUTER_<FIELD>`` from the environment; ``upstreams`` is JSON
(``{"1": "http://127.0.0.1:8081"}``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from serving.router.schema import ModelVersion, UpstreamUrl

__all__ = ["RouterSettings", "ADMIN_TOKEN_ENV", "admin_headers"]

ADMIN_TOKEN_ENV = "MARQUEE_ROUTER_ADMIN_TOKEN"


def admin_headers(token: str | None = None, env: Mapping[str, str] | None = None
                  ) -> dict[str, str]:
    """The headers a caller of the admin API (the rollout controller, the retrain trigger, the
    demo) sends: ``Authorization: Bearer`` with ``token``, else with ``MARQUEE_ROUTER_ADMIN_TOKEN``
    of ``env`` (default: this process's), the variable the router reads; none when unset."""
    token = token or ((os.environ if env is None else env).get(ADMIN_TOKEN_ENV) or "").strip()
    return {"authorization": f"Bearer {token}"} if token else {}


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MARQUEE_ROUTER_", extra="ignore")

    host: str | None = Field(None, description="Bind address. Default: MARQUEE_BIND_HOST.")
    port: int = Field(8090, ge=1, le=65535, description="HTTP port.")
    model_name: str = Field("movie-recommender", description="KServe model name upstream.")
    upstreams: dict[ModelVersion, UpstreamUrl] = Field(
        default_factory=dict, description="Model server URL per version, e.g. {'1': 'http://…'}.")
    upstream_url_template: UpstreamUrl | None = Field(
        None, description="URL of a version not in upstreams, e.g. "
        "'http://movie-recommender-v{version}-predictor.marquee.svc.cluster.local'.")
    baseline_version: ModelVersion | None = Field(
        None, description="Version served before a controller sets the routing.")
    upstream_timeout_seconds: float = Field(2.0, gt=0, description="Per model-server call.")
    max_connections: int = Field(256, ge=1, description="Pooled connections to model servers.")
    upstream_client: Literal["raw", "aiohttp", "httpx"] = Field(
        "raw", description="HTTP client to the model servers: raw (built-in keep-alive HTTP/1.1 "
        "pool, least CPU), aiohttp or httpx.")
    shadow_timeout_seconds: float = Field(2.0, gt=0, description="Per mirrored call.")
    shadow_max_in_flight: int = Field(
        64, ge=1, description="Mirrors beyond this many in flight are dropped, never queued.")
    shadow_mode: Literal["inline", "worker"] = Field(
        "inline", description="Where mirrors run: inline (tasks on the router's event loop) "
        "or worker (a child process at lower CPU priority; the router only hands each mirror "
        "over).")
    shadow_worker_nice: int = Field(
        10, ge=0, le=19, description="CPU niceness added to the shadow worker process.")
    shadow_window_lists: int = Field(
        2000, ge=10, description="Recent lists per side for shadow coverage and popularity bias.")
    request_state_max: int = Field(
        200_000, ge=100, description="Served requests remembered for feedback attribution.")
    request_state_ttl_seconds: float = Field(
        3600.0, gt=0, description="…and for how long: at most what /admin/stats keeps "
        "(stats_retention_seconds; unset, it is shortened to that).")
    request_state_mib: int = Field(
        256, ge=1, description="…and in at most this much memory, estimated (MiB): lists of "
        "large k are fewer (a list of k items takes about 0.6 KB + 9 bytes an item).")
    # A secret: from router.adminAuth.existingSecret in the chart, never a plain value; left out
    # of model_dump() (so never in a log line or a child's environment).
    admin_token: SecretStr | None = Field(
        None, exclude=True,
        description="Bearer token every /admin/* call must carry (Authorization: Bearer "
        "<token>); the rollout controller sends the same variable. Unset: the admin API is open "
        "to whoever reaches the router (a warning at start-up).")
    metrics_retired_versions: int = Field(
        5, ge=0, description="Model versions no longer routed whose request and error series "
        "/metrics keeps (the most recently routed); older ones are dropped.")
    stats_bucket_seconds: float = Field(1.0, gt=0, description="Resolution of /admin/stats.")
    stats_retention_seconds: float = Field(21_600.0, gt=0, description="History of /admin/stats.")
    exposure_log_enabled: bool = Field(True, description="Write exposure and feedback logs.")
    log_flush_seconds: float = Field(5.0, gt=0, description="Flush logs at least this often.")
    log_batch_rows: int = Field(5000, ge=1, description="Rows per Parquet file at most.")
    log_queue_size: int = Field(100_000, ge=1, description="Rows buffered before drops.")
    fault_assignment_candidate_weight: float | None = Field(
        None, ge=0, le=100,
        description="TESTS ONLY: ignore the declared candidate weight and assign this one "
        "(an injected assignment bug for the sample-ratio check).")

    @field_validator("admin_token")
    @classmethod
    def _token_not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("is blank: unset it to run the admin API without authentication")
        return v

    @model_validator(mode="after")
    def _feedback_within_stats(self) -> RouterSettings:
        """Feedback is accepted for ``request_state_ttl_seconds`` and counted in the stats
        bucket its list was served in, which ``/admin/stats`` keeps for whole buckets of
        ``stats_bucket_seconds`` up to ``stats_retention_seconds``. A longer TTL accepted a
        late click (202, in the feedback log and Prometheus) that no ``/admin/stats`` window
        ever counted. Given explicitly, such a TTL is refused; left at its default, it is
        shortened to what the stats keep."""
        bucket, ttl = self.stats_bucket_seconds, self.request_state_ttl_seconds
        buckets = int(self.stats_retention_seconds / bucket)  # as WindowedStats expires them
        if ttl / bucket <= buckets + 1e-9:
            return self
        kept = buckets * bucket
        if kept > 0 and "request_state_ttl_seconds" not in self.model_fields_set:
            self.request_state_ttl_seconds = kept
            return self
        kept_text = (f"stats_retention_seconds={self.stats_retention_seconds:g} in whole "
                     f"stats_bucket_seconds={bucket:g} buckets: {kept:g} s")
        advice = (f"set request_state_ttl_seconds to at most {kept:g} or raise "
                  "stats_retention_seconds" if kept > 0 else
                  "raise stats_retention_seconds to at least stats_bucket_seconds")
        # An error naming this field and its value only (pydantic-core keeps a ValidationError
        # raised in a validator as it is): a model-level error's input is every setting
        # given, the admin token included, and the CLI's error line echoes it.
        raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
            type=PydanticCustomError("ttl_beyond_stats", (
                f"longer than /admin/stats keeps a list's clicks ({kept_text}): feedback on an "
                f"older list would be accepted but counted in no /admin/stats window; "
                f"{advice}")),
            loc=("request_state_ttl_seconds",), input=ttl)])
