"""The service's settings, read from the environment once, validated, then passed around.

Every variable has a default that works on a laptop; a bad value raises `ConfigError` with one
line naming the variable and what is allowed, so the process stops at start, not mid-request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from config.choices import (
    ACK_MODES,
    BATCH_FORMATS,
    LOG_FORMATS,
    LOG_LEVELS,
    PARTITION_INVALID,
    RATE_STORE_FAILURES,
    S3_CHECKS,
    SERVERS,
    WAITRESS_THREADS,
)
from config.layout import PARTITION_BY_FORM, check_batch_format, check_prefixes, parse_partition_by
from config.rate_store import FORM as RATE_STORE_FORM
from config.rate_store import parse_rate_store, redact
from config.reader import ConfigError, EnvReader
from config.tenants import tenants_of


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service reads from its environment."""

    port: int = 8000
    host: str = "0.0.0.0"
    web_concurrency: int = 1
    web_threads: int | None = None  # waitress's request threads; None: WAITRESS_THREADS
    max_workers: int = 32
    max_queue: int = 100
    max_body_bytes: int = 1_048_576
    max_payloads_per_request: int = 1000
    retry_after_seconds: int = 1
    ack_mode: str = "queued"
    s3_bucket: str | None = None
    s3_prefix: str = "payloads/"
    s3_endpoint_url: str | None = None
    s3_put: str = "direct"
    embedded_s3_port: int = 9000
    spool_dir: str = "spool"
    upload_retry_seconds: float = 30.0
    max_restarts: int = 5
    restart_period: float = 60.0
    shutdown_timeout: float = 25.0
    batch_max_payloads: int = 1
    batch_max_bytes: int = 4 * 1024 * 1024
    batch_max_wait_ms: int = 1000
    batch_gzip: bool = False
    stored_ack_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"
    ingest_tokens: tuple[str, ...] | None = None
    ops_tokens: tuple[str, ...] | None = None
    channel_timeout: int = 30
    server: str = "granian"
    header_timeout: float = 10.0
    body_timeout: float = 30.0  # granian: the whole body within this, else 408
    body_memory_bytes: int = 64 * 1024 * 1024  # granian: bodies held at once per worker
    backlog: int = 2048
    max_connections: int = 10000
    s3_check: str = "warn"
    access_log: bool = True
    max_decompressed_bytes: int | None = None  # None: 2 x MAX_BODY_BYTES
    tenant_rate: float = 0.0  # payloads per second per tenant; 0: no rate limit
    tenant_burst: int | None = None  # None: twice the rate, at least one full collection
    tenant_share: float | None = None  # None: an equal share per configured tenant
    s3_conditional_writes: bool = True
    batch_line_ids: bool = False
    s3_error_prefix: str = "errors/"
    s3_state_prefix: str = "state/"  # the service's own objects: idempotency markers, the probe
    partition_by: tuple[str, ...] = ()  # payload fields that become key segments name=value/
    partition_invalid: str = "default"  # an unusable value: "default" partition, or "error"
    batch_format: str = "ndjson"
    rate_store: str | None = None  # redis[s]://...: TENANT_RATE counted for the whole fleet
    rate_store_failure: str = "open"  # RATE_STORE unreachable: "open" per box, "closed" 429
    rate_store_timeout_ms: int = 50  # the longest one Redis round trip may take

    @property
    def threads(self) -> int:
        """Request threads per waitress process: WEB_THREADS, or WAITRESS_THREADS."""
        return self.web_threads or WAITRESS_THREADS

    def __post_init__(self) -> None:
        if self.tenant_burst is not None and self.tenant_burst < self.max_payloads_per_request:
            raise ConfigError(
                f"TENANT_BURST={self.tenant_burst} is not valid: a collection of "
                f"MAX_PAYLOADS_PER_REQUEST={self.max_payloads_per_request} payloads could never "
                "be accepted; set it at least that high"
            )
        endpoint = self.s3_endpoint_url
        if endpoint is not None and not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
            raise ConfigError(
                f"AWS_ENDPOINT_URL_S3={endpoint!r} is not valid: expected http(s)://host[:port]"
            )
        check_prefixes(self.s3_prefix, self.s3_error_prefix, self.s3_state_prefix)
        check_batch_format(self.batch_format, self.batch_max_payloads, self.batch_gzip)

    @property
    def decompressed_limit(self) -> int:
        """The most a compressed body may expand to (MAX_DECOMPRESSED_BYTES)."""
        return self.max_decompressed_bytes or 2 * self.max_body_bytes

    @property
    def tenants(self) -> tuple[str, ...]:
        return tenants_of(self.ingest_tokens)

    @property
    def burst(self) -> int:
        """Payloads a tenant may post at once before TENANT_RATE holds it back."""
        return self.tenant_burst or max(int(self.tenant_rate * 2), self.max_payloads_per_request)

    @property
    def share(self) -> float:
        """The part of the mailboxes' room one tenant may hold (TENANT_SHARE)."""
        if self.tenant_share is not None:
            return self.tenant_share
        return 1.0 / max(len(self.tenants), 1)

    @property
    def uses_embedded_store(self) -> bool:
        """No bucket configured: serve from a local S3-compatible store instead of AWS."""
        return self.s3_bucket is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise ConfigError on the first bad one."""
        env = os.environ if environ is None else environ
        reader = EnvReader(env)
        d = cls()  # the defaults (slotted dataclass fields are not readable on the class)
        return cls(
            port=reader.integer("PORT", d.port, minimum=1, maximum=65535),
            host=reader.optional("HOST") or d.host,
            web_concurrency=reader.integer(
                "WEB_CONCURRENCY", d.web_concurrency, minimum=1, maximum=64
            ),
            web_threads=reader.integer("WEB_THREADS", 0, minimum=1, maximum=4096) or None,
            s3_check=reader.choice("S3_CHECK", d.s3_check, S3_CHECKS),
            max_decompressed_bytes=reader.integer(
                "MAX_DECOMPRESSED_BYTES", 0, minimum=64, maximum=1 << 32
            )
            or None,
            tenant_rate=reader.number("TENANT_RATE", d.tenant_rate, minimum=0, maximum=1e9),
            s3_conditional_writes=reader.boolean("S3_CONDITIONAL_WRITES", d.s3_conditional_writes),
            s3_error_prefix=reader.prefix("S3_ERROR_PREFIX", d.s3_error_prefix),
            s3_state_prefix=reader.prefix("S3_STATE_PREFIX", d.s3_state_prefix),
            partition_by=reader.parsed("PARTITION_BY", (), PARTITION_BY_FORM, parse_partition_by),
            partition_invalid=reader.choice(
                "PARTITION_INVALID", d.partition_invalid, PARTITION_INVALID
            ),
            batch_format=reader.choice("BATCH_FORMAT", d.batch_format, BATCH_FORMATS),
            batch_line_ids=reader.boolean("BATCH_LINE_IDS", d.batch_line_ids),
            tenant_burst=reader.integer("TENANT_BURST", 0, minimum=1) or None,
            tenant_share=reader.number("TENANT_SHARE", 0, minimum=0.01, maximum=1) or None,
            rate_store=reader.secret("RATE_STORE", RATE_STORE_FORM, parse_rate_store),
            rate_store_failure=reader.choice(
                "RATE_STORE_FAILURE", d.rate_store_failure, RATE_STORE_FAILURES
            ),
            rate_store_timeout_ms=reader.integer(
                "RATE_STORE_TIMEOUT_MS", d.rate_store_timeout_ms, minimum=1, maximum=10_000
            ),
            access_log=reader.boolean("ACCESS_LOG", d.access_log),
            max_workers=reader.integer("MAX_WORKERS", d.max_workers, minimum=1, maximum=1024),
            max_queue=reader.integer("MAX_QUEUE", d.max_queue, minimum=1, maximum=10_000_000),
            max_body_bytes=reader.integer(
                "MAX_BODY_BYTES", d.max_body_bytes, minimum=64, maximum=1 << 30
            ),
            max_payloads_per_request=reader.integer(
                "MAX_PAYLOADS_PER_REQUEST", d.max_payloads_per_request, minimum=1
            ),
            retry_after_seconds=reader.integer(
                "RETRY_AFTER", d.retry_after_seconds, minimum=1, maximum=3600
            ),
            ack_mode=reader.choice("ACK_MODE", d.ack_mode, ACK_MODES),
            s3_bucket=reader.optional("S3_BUCKET"),
            s3_prefix=reader.prefix("S3_PREFIX", d.s3_prefix),
            s3_endpoint_url=reader.optional("AWS_ENDPOINT_URL_S3"),
            s3_put=reader.choice("S3_PUT", d.s3_put, ("direct", "boto3")),
            embedded_s3_port=reader.integer(
                "EMBEDDED_S3_PORT", d.embedded_s3_port, minimum=1, maximum=65535
            ),
            spool_dir=reader.optional("SPOOL_DIR") or d.spool_dir,
            upload_retry_seconds=reader.number(
                "UPLOAD_RETRY_SECONDS", d.upload_retry_seconds, minimum=0, maximum=3600
            ),
            max_restarts=reader.integer("MAX_RESTARTS", d.max_restarts, minimum=0, maximum=1000),
            restart_period=reader.number(
                "RESTART_PERIOD", d.restart_period, minimum=1, maximum=86400
            ),
            shutdown_timeout=reader.number(
                "SHUTDOWN_TIMEOUT", d.shutdown_timeout, minimum=1, maximum=3600
            ),
            batch_max_payloads=reader.integer(
                "BATCH_MAX_PAYLOADS", d.batch_max_payloads, minimum=1, maximum=100_000
            ),
            batch_max_bytes=reader.integer(
                "BATCH_MAX_BYTES", d.batch_max_bytes, minimum=1024, maximum=5 * 1024**3
            ),
            batch_max_wait_ms=reader.integer(
                "BATCH_MAX_WAIT_MS", d.batch_max_wait_ms, minimum=1, maximum=600_000
            ),
            batch_gzip=reader.boolean("BATCH_GZIP", d.batch_gzip),
            stored_ack_timeout=reader.number(
                "STORED_ACK_TIMEOUT", d.stored_ack_timeout, minimum=0.1, maximum=300
            ),
            log_level=reader.choice("LOG_LEVEL", d.log_level, LOG_LEVELS, upper=True),
            log_format=reader.choice("LOG_FORMAT", d.log_format, LOG_FORMATS),
            ingest_tokens=reader.tokens("INGEST_TOKENS"),
            ops_tokens=reader.tokens("OPS_TOKEN"),
            channel_timeout=reader.integer(
                "CHANNEL_TIMEOUT", d.channel_timeout, minimum=1, maximum=3600
            ),
            server=reader.choice("SERVER", d.server, SERVERS),
            header_timeout=reader.number("HEADER_TIMEOUT", d.header_timeout, minimum=1, maximum=60),
            body_timeout=reader.number("BODY_TIMEOUT", d.body_timeout, minimum=1, maximum=3600),
            body_memory_bytes=reader.integer(
                "BODY_MEMORY_BYTES", d.body_memory_bytes, minimum=65536, maximum=1 << 40
            ),
            backlog=reader.integer("BACKLOG", d.backlog, minimum=128, maximum=65535),
            max_connections=reader.integer(
                "MAX_CONNECTIONS", d.max_connections, minimum=16, maximum=1_000_000
            ),
        )

    def describe(self) -> dict[str, Any]:
        """The effective settings, fit for a start-up log line: tokens are counted, not shown."""
        shown = asdict(self)
        shown["ingest_tokens"] = (
            f"{len(self.ingest_tokens)} token(s)" if self.ingest_tokens else "unset: any token"
        )
        shown["rate_store"] = redact(self.rate_store) if self.rate_store else None
        shown["ops_tokens"] = (
            f"{len(self.ops_tokens)} token(s)"
            if self.ops_tokens
            else "unset: /healthz and /metrics are open"
        )
        return shown
