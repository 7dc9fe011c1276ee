"""Typed settings of the model server (one object, built in ``main()`` and passed down).

Every field reads ``MARQUEE_SERVING_<FIELD>`` from the environment (for example
``MARQUEE_SERVING_FAULT_ERROR_RATE``) and is mirrored one to one by a Helm value under
``modelServer``. Nothing here touches disk or the network.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServingSettings", "Runtime", "VARIANT_PATTERN", "VARIANT_MAX_LENGTH",
           "variant_problem"]

# A variant is a label value of every marquee_serving_* series and a payload-log column: one
# short token (any text, newlines and 10 KB included, was taken and put on every series).
VARIANT_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$"
VARIANT_MAX_LENGTH = 63


def variant_problem(value: str) -> str | None:
    """Why ``value`` is no variant name (a sentence without the value), or None when it is."""
    import re

    if len(value) > VARIANT_MAX_LENGTH or not re.fullmatch(VARIANT_PATTERN, value):
        return (f"expected a short name (letters, digits, '.', '_', '-', starting with a letter "
                f"or digit; at most {VARIANT_MAX_LENGTH} characters)")
    return None


# payload-sink: no model, the CloudEvents payload-log sink alone (the chart's sink Deployment).
Runtime = Literal["kserve", "bentoml", "payload-sink"]


class ServingSettings(BaseSettings):
    """What one model server loads, how it answers and where it logs."""

    model_config = SettingsConfigDict(env_prefix="MARQUEE_SERVING_", extra="ignore")

    # What to load: exactly one of these (the CLI flags set them) ------------------------------
    model_version: str | None = Field(None, description="Registry version number to serve "
                                      "(1, 2, …; an alias goes in alias).")
    alias: str | None = Field(None, description="Registry alias to serve (production, candidate…).")
    bundle_uri: str | None = Field(
        None, description="Bundle directory or s3://…/models/<name>/<version>/ (KServe storageUri)."
    )
    cache_dir: str | None = Field(
        None, description="Where fetched bundles are kept. Default: <MARQUEE_HOME>/bundles."
    )

    # Network -----------------------------------------------------------------------------------
    runtime: Runtime = Field("kserve", description="Model server runtime.")
    host: str | None = Field(None, description="Bind address. Default: MARQUEE_BIND_HOST.")
    port: int = Field(8080, ge=1, le=65535, description="HTTP port.")
    enable_grpc: bool = Field(False, description="Also start KServe's gRPC server.")
    grpc_port: int = Field(8081, ge=1, le=65535, description="gRPC port when enabled.")
    grace_period_seconds: int = Field(20, ge=0, description="Graceful shutdown timeout.")
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Larger request bodies are refused with 413."
    )
    max_instances: int = Field(64, ge=1, description="Most instances in one request.")

    # Retrieval index ---------------------------------------------------------------------------
    candidates: int | None = Field(
        None, ge=1, description="Candidates retrieved before ranking; unset: the model's own "
        "ranker.n_candidates, the pool its ranker was trained and evaluated on.")
    exact_index_max_items: int = Field(
        20_000, ge=0, description="Catalogues up to this size use exact inner-product search."
    )
    index_kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="auto: flat up to exact_index_max_items, then ivf."
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(80, ge=8, description="HNSW build beam width.")
    hnsw_ef_search: int = Field(256, ge=8, description="HNSW search beam width (start value).")
    ivf_lists: int = Field(0, ge=0, description="IVF lists; 0 = 4·sqrt(n_items).")
    ivf_nprobe: int = Field(16, ge=1, description="IVF lists probed (start value).")
    target_recall: float = Field(
        0.95, gt=0.0, le=1.0,
        description="At load the search width is raised until recall@candidates vs exact "
        "search on a sample reaches this (or the width limit).",
    )
    recall_sample: int = Field(200, ge=10, description="Queries used to measure recall at load.")
    index_threads: int = Field(1, ge=1, description="FAISS threads per search (1 = no contention).")
    omp_threads: int = Field(
        1, ge=0,
        description="OMP_NUM_THREADS of the server process (LightGBM ranker; 0 = leave). "
        "Per-request work is tiny: OpenMP thread teams only add wake-ups and contention.",
    )
    torch_threads: int = Field(
        1, ge=0, description="Torch intra-op threads for the per-request user tower (0 = leave)."
    )

    # Per-stage time budgets (ms); a stage that fails or overruns → popularity fallback ----------
    budget_retrieve_ms: float = Field(50.0, gt=0)
    budget_rank_ms: float = Field(50.0, gt=0)
    budget_rerank_ms: float = Field(20.0, gt=0)

    cold_start_strategy: Literal["model", "popular"] | None = Field(
        None,
        description="Cold users without history: 'model' runs the towers on demographics, "
        "'popular' answers from segment popularity; unset: the model's own (its cold_start, "
        "as Recommender.recommend answers them).",
    )

    # Online features ---------------------------------------------------------------------------
    redis_url: str | None = Field(
        None, description="redis://… for online user history; default: the bundle's table in memory."
    )
    redis_key_prefix: str = Field("marquee:history:", description="Key = prefix + user_id.")
    redis_timeout_ms: float = Field(5.0, gt=0, description="Redis lookup timeout.")

    # Payload logging ---------------------------------------------------------------------------
    payload_log_enabled: bool = Field(True, description="Write payload logs to the object store.")
    payload_log_queue_size: int = Field(50_000, ge=1, description="Rows buffered before drops.")
    payload_log_queue_mib: int = Field(
        128, ge=1,
        description="Estimated MiB of rows buffered before drops (rows carry the request and "
        "response JSON).")
    payload_log_batch_rows: int = Field(2_000, ge=1, description="Rows per Parquet file at most.")
    payload_log_flush_seconds: float = Field(5.0, gt=0, description="Flush at least this often.")
    variant: str = Field(
        "", max_length=VARIANT_MAX_LENGTH, pattern=VARIANT_PATTERN,
        description="Variant label written to payload logs and metrics: empty, or a short name "
        "(letters, digits, '.', '_', '-'; at most 63 characters) such as blue or canary.")
    payload_sink_enabled: bool = Field(
        False,
        description="Also mount POST /payload-sink on the KServe model server, for KServe's "
        "CloudEvents payload logger (off by default: the model server writes its own payload "
        "log, and an idle sink would only let others inject rows that drift jobs judge).",
    )
    # A secret: from sink.auth.existingSecret in the chart, never a plain value; left out of
    # model_dump() (so never copied into a child's environment or a log line).
    payload_sink_token: SecretStr | None = Field(
        None, exclude=True,
        description="Shared token POST /payload-sink requires (Authorization: Bearer <token>, "
        "or ?token=<token> in KServe's logger URL); unset: the sink is open (a warning at "
        "start-up).",
    )

    # Fault injection for rollout tests (default off) -------------------------------------------
    fault_error_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests answered with an injected 500."
    )
    fault_extra_latency_ms: float = Field(
        0.0, ge=0.0, description="Delay added to every request (ms)."
    )
    fault_seed: int | None = Field(None, description="Seed of the fault injector's RNG.")

    @field_validator("model_version")
    @classmethod
    def _version_number(cls, v: str | None) -> str | None:
        # a name here was looked up as an alias ("no version with alias 'abc'"), and the flag
        # and MARQUEE_SERVING_MODEL_VERSION both land in this field
        from marquee.errors import InvalidReferenceError
        from marquee.registry import version_number

        if v is None:
            return v
        try:
            version_number(v)
        except InvalidReferenceError as exc:
            raise ValueError(f"{exc.message}; an alias such as production goes in alias "
                             "(--alias)") from None
        return v.strip()

    @field_validator("host", mode="before")
    @classmethod
    def _host_not_empty(cls, v: object) -> object:
        # empty fell back to MARQUEE_BIND_HOST without a word, while an empty MARQUEE_BIND_HOST
        # is refused; the chart never sets this variable: unset it to use MARQUEE_BIND_HOST
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty (unset MARQUEE_SERVING_HOST to bind "
                             "MARQUEE_BIND_HOST)")
        return v

    @field_validator("payload_sink_token")
    @classmethod
    def _token_not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("is blank: unset it to run the sink without authentication")
        return v

    @model_validator(mode="after")
    def _one_model_reference(self) -> ServingSettings:
        given = [x for x in (self.model_version, self.alias, self.bundle_uri) if x]
        if len(given) > 1:
            raise ValueError("set only one of model_version, alias, bundle_uri")
        return self

    @property
    def sink_token(self) -> str | None:
        """The payload sink's token, or None when the sink runs without authentication."""
        return self.payload_sink_token.get_secret_value().strip() if self.payload_sink_token \
            else None
