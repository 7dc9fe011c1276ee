"""Payload logging: batched Parquet rows in the object store, and a KServe CloudEvents sink."""

from serving.payload.logger import PayloadLogger
from serving.payload.schema import PAYLOAD_PREFIX, payload_schema

__all__ = ["PayloadLogger", "PAYLOAD_PREFIX", "payload_schema"]
