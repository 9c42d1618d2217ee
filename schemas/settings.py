"""The one typed settings module, shared by the producer SDK and the consumer service.

Every setting has one environment variable, ``METATRAIL_<FIELD NAME>``. A bad value fails
at load time with a ``ConfigError`` naming the variable. Nothing here writes to
``os.environ`` or mutates globals; callers hold the ``Settings`` they loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metatrail.schemas.errors import ConfigError

ENV_PREFIX = "METATRAIL_"


class Settings(BaseSettings):
    """All of metatrail's configuration. Field ``foo_bar`` is read from ``METATRAIL_FOO_BAR``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # --- where recorded events go -------------------------------------------------------
    transport: Literal["embedded", "kafka", "file", "http"] = Field(
        "embedded",
        description="Where the producer delivers events: 'embedded' (apply in-process to the "
        "local store), 'kafka', 'http' (a `metatrail serve` team server: also used for cache "
        "lookups and warm start), or 'file' (JSONL, for debugging and `metatrail ingest`).",
    )
    store_url: str = Field(
        "sqlite:///.metatrail/metadata.db",
        description="SQLAlchemy URL of the metadata store (SQLite, postgresql+psycopg://, "
        "mysql+pymysql://).",
    )
    spool_path: Path = Field(
        Path(".metatrail/spool.db"), description="The producer's durable outbox (SQLite, WAL)."
    )
    spool_max_bytes: int = Field(
        1 << 30, gt=0, description="Spool size above which the full-spool policy applies."
    )
    spool_full_policy: Literal["warn", "drop_oldest", "raise"] = Field(
        "warn",
        description="When the spool is over its size: 'warn' keeps recording and warns loudly; "
        "'drop_oldest' deletes the oldest undelivered events and says how many; 'raise' fails "
        "the emit (strict environments).",
    )
    file_path: Path = Field(
        Path(".metatrail/events.jsonl"), description="JSONL file written by the 'file' transport."
    )
    strict: bool = Field(
        False, description="Raise recording errors into user code instead of logging them (tests)."
    )
    redact: str = Field(
        "password,passwd,secret,token,api_key,apikey,credential,private_key",
        description="Parameters and properties whose name contains one of these comma-separated "
        "words (any case) are recorded as '***' (listed in the custom property 'redacted'); "
        "'off' records every value.",
    )
    cache: Literal["on", "off"] = Field(
        "on", description="'off' disables execution caching everywhere."
    )
    relay_batch_size: int = Field(500, gt=0, le=100_000, description="Events per relay batch.")
    relay_interval_ms: int = Field(
        200, ge=1, description="How long the relay waits for more events before sending."
    )
    exit_flush_timeout_s: float = Field(
        10.0, ge=0, description="How long the exit hook waits to deliver spooled events."
    )

    # --- Kafka ---------------------------------------------------------------------------
    kafka_bootstrap: str | None = Field(
        None, description="Comma-separated Kafka bootstrap servers (host:port)."
    )
    kafka_group: str = Field("metatrail", min_length=1, description="Consumer group of `consume`.")
    kafka_topic_prefix: str = Field(
        "metatrail",
        min_length=1,
        pattern=r"^[A-Za-z0-9._\-]+$",
        description="Prefix of every topic: <prefix>.events, <prefix>.events.dlq, <prefix>.triggers, "
        "<prefix>.openlineage.",
    )
    kafka_partitions: int = Field(6, gt=0, description="Partitions of topics created at start-up.")
    kafka_repair_topics: bool = Field(
        True,
        description="When `consume` finds a topic with fewer partitions than "
        "METATRAIL_KAFKA_PARTITIONS or a smaller max.message.bytes (checked at start and after "
        "every rebalance), it adds the partitions and sets the size where the broker allows; "
        "false: it only warns.",
    )
    kafka_replication_factor: int = Field(
        1, gt=0, description="Replication factor of topics created at start-up."
    )
    kafka_max_poll_interval_ms: int = Field(
        300_000, gt=0, description="Longest time between polls before the member is evicted."
    )
    kafka_session_timeout_ms: int = Field(
        45_000, gt=0, description="Heartbeat silence after which a member is declared dead."
    )
    kafka_heartbeat_interval_ms: int = Field(3_000, gt=0, description="Heartbeat period.")
    kafka_max_poll_records: int = Field(500, gt=0, description="Events applied per DB transaction.")
    kafka_poll_timeout_ms: int = Field(1_000, gt=0, description="How long one poll waits for data.")
    kafka_max_message_bytes: int = Field(
        1_048_576, gt=0, description="Largest event accepted; larger ones are dead-lettered."
    )
    kafka_max_request_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest message the producer sends: the topic's max.message.bytes (16 MiB on "
        "topics metatrail creates). Above METATRAIL_KAFKA_MAX_MESSAGE_BYTES, so an oversized event "
        "reaches the consumer and is dead-lettered there; one refused anyway is set aside next to "
        "the spool.",
    )
    kafka_compression: Literal["gzip", "snappy", "lz4", "zstd", "none"] = Field(
        "gzip", description="Producer compression codec (snappy/lz4/zstd need their libraries)."
    )
    kafka_request_timeout_ms: int = Field(30_000, gt=0, description="Kafka request timeout.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password.")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers.")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS).")
    kafka_ssl_check_hostname: bool = Field(True, description="Verify the broker's host name.")

    # --- HTTP transport (a team server) ---------------------------------------------------
    http_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Base URL of the team server for METATRAIL_TRANSPORT=http, e.g. "
        "http://metatrail.example:8181 (the API is under /api/v1).",
    )
    http_token: SecretStr | None = Field(
        None, description="Bearer token for the team server (`metatrail token create`)."
    )
    http_timeout_s: float = Field(
        30.0, gt=0, description="Timeout of one request to the team server."
    )

    # --- team server (`metatrail serve`) --------------------------------------------------
    server_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address `metatrail serve` listens on. Any non-loopback address needs at "
        "least one token in the store (or --insecure).",
    )
    server_port: int = Field(8181, ge=0, le=65535, description="Port of `metatrail serve`.")
    server_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes `metatrail serve` answers with, sharing its port. Python runs one "
        "request's work at a time per process: on PostgreSQL or MariaDB, one worker per core "
        "lets ingest (`POST /events`, `/lineage/batch`) use every core. Each worker holds its "
        "own connection pools.",
    )
    server_apply_processes: int | None = Field(
        None,
        ge=0,
        le=256,
        description="Processes each server worker maps and applies OpenLineage batches in, on "
        "PostgreSQL or MariaDB (default: the cores shared among the workers, two at least; "
        "`metatrail serve` starts them with the server; 0: in the worker's threads). Batches that "
        "land in one worker then run side by side.",
    )
    server_max_request_bytes: int = Field(
        64 * 1024 * 1024,
        gt=0,
        description="Largest request body `POST /api/v1/events` accepts, after gunzip; larger "
        "is answered 413.",
    )
    server_shutdown_timeout_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM the server stops accepting connections and waits this long "
        "for requests in flight to finish.",
    )

    # --- OpenLineage -------------------------------------------------------------------
    openlineage_max_event_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest OpenLineage event accepted (file, <prefix>.openlineage topic, HTTP); "
        "larger ones are dead-lettered.",
    )
    openlineage_max_facet_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest facet stored as it came; a larger one (e.g. spark.logicalPlan) is "
        "replaced by a marker with its size, sha256 and first KiB.",
    )
    openlineage_forward_api_key: SecretStr | None = Field(
        None, description="Bearer token `metatrail forward openlineage` sends to the target."
    )

    # --- store ---------------------------------------------------------------------------
    db_retry_attempts: int = Field(
        8, ge=1, description="Attempts at a batch when the DB fails transiently, before giving up."
    )
    db_retry_max_wait_s: float = Field(
        10.0, gt=0, description="Longest back-off between two attempts at a batch."
    )
    execution_stale_after_s: float = Field(
        86_400.0,
        gt=0,
        description="A RUNNING execution with no event for this long is shown as stale (so is "
        "one whose process is gone on this host); `metatrail db reap` closes stale ones as FAILED.",
    )

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.transport == "kafka" and not self.kafka_bootstrap:
            raise ValueError(
                "METATRAIL_TRANSPORT is 'kafka' but METATRAIL_KAFKA_BOOTSTRAP is not set"
            )
        if not self.redact_patterns and self.redact.strip().lower() != "off":
            raise ValueError(
                "METATRAIL_REDACT must list words (comma-separated) or be 'off', got "
                f"{self.redact!r}"
            )
        if self.transport == "http" and not self.http_url:
            raise ValueError("METATRAIL_TRANSPORT is 'http' but METATRAIL_HTTP_URL is not set")
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_mechanism:
            raise ValueError(
                "METATRAIL_KAFKA_SECURITY_PROTOCOL is SASL_* but METATRAIL_KAFKA_SASL_MECHANISM is not set"
            )
        return self

    # --- derived -------------------------------------------------------------------------
    @property
    def events_topic(self) -> str:
        return f"{self.kafka_topic_prefix}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.kafka_topic_prefix}.events.dlq"

    @property
    def triggers_topic(self) -> str:
        return f"{self.kafka_topic_prefix}.triggers"

    @property
    def redact_patterns(self) -> tuple[str, ...]:
        """The lower-cased words of ``redact`` (empty when it is 'off')."""
        if self.redact.strip().lower() == "off":
            return ()
        return tuple(w.strip().lower() for w in self.redact.split(",") if w.strip())

    @property
    def openlineage_topic(self) -> str:
        """Where OpenLineage's Kafka transport writes RunEvents for ``consume`` to read."""
        return f"{self.kafka_topic_prefix}.openlineage"

    @property
    def cache_enabled(self) -> bool:
        return self.cache == "on"

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Connection and security arguments common to kafka-python's clients."""
        if not self.kafka_bootstrap:
            raise ConfigError("METATRAIL_KAFKA_BOOTSTRAP is not set")
        kwargs: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()],
            "security_protocol": self.kafka_security_protocol,
            "request_timeout_ms": self.kafka_request_timeout_ms,
            "client_id": "metatrail",
        }
        if self.kafka_sasl_mechanism:
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            if self.kafka_sasl_password is not None:
                kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_check_hostname"] = self.kafka_ssl_check_hostname
            for key in ("cafile", "certfile", "keyfile"):
                value = getattr(self, f"kafka_ssl_{key}")
                if value is not None:
                    kwargs[f"ssl_{key}"] = str(value)
        return kwargs


def env_var(field: str) -> str:
    """The environment variable of a settings field."""
    return ENV_PREFIX + field.upper()


def known_env_vars() -> frozenset[str]:
    """Every environment variable metatrail reads."""
    return frozenset(env_var(name) for name in Settings.model_fields)


def _config_error(exc: ValidationError, overrides: dict[str, Any]) -> ConfigError:
    """The first error of ``exc`` as a ``ConfigError`` naming the variable and the value."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else ""
    where = env_var(field) if field in Settings.model_fields else "settings"
    if field in overrides:
        where = f"{field} (configure argument)"
    value = err.get("input")
    got = f", got {value!r}" if field and not isinstance(value, dict) else ""
    message = str(err["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{where}: {message}{got}")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with keyword overrides taking precedence.

    Raises ``ConfigError`` naming the variable (or keyword) and what was wrong.
    """
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc, overrides) from exc


class _StrictOnly(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    strict: bool = False


def load_strict() -> bool:
    """``METATRAIL_STRICT`` read on its own, so that a bad value of another variable
    cannot hide it: the SDK then raises that variable's ``ConfigError`` at the first
    recording call instead of warning. Raises ``ConfigError`` if it is itself bad."""
    try:
        return _StrictOnly().strict
    except ValidationError as exc:
        raise _config_error(exc, {}) from exc
