"""The one place that reads the environment.

`Settings.from_env()` reads the `TIMO_*` variables (README's "Configuration") once, validates them
and returns an immutable object that every process passes around. Nothing else in the product
reads `os.environ` for configuration. Four places touch the environment for another reason, and
say so: `platform.prometheus` sets `PROMETHEUS_MULTIPROC_DIR`, prometheus-client's own way of
telling a server's processes where their metrics live; `timo_hub.gunicorn_config` and
`workers.entry` set the BLAS thread variables numpy reads; `timo-hub dev` passes its environment
on to the processes it runs.

Platform code: imports nothing else of the product.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

Environment = Literal["development", "test", "production"]

# Anyone can read this value in the source, so it only protects development data. Production
# refuses to start with it (see `_production_has_no_dev_defaults`).
DEV_KEY_PEPPER = "timo-dev-pepper-not-for-production"
MIN_PRODUCTION_PEPPER_LENGTH = 32
# Signs the dashboard's session cookie and its CSRF tokens; like the pepper, production refuses it.
DEV_SECRET_KEY = "timo-dev-secret-key-not-for-production"
MIN_PRODUCTION_SECRET_KEY_LENGTH = 32

_DATABASE_SCHEMES = {"postgresql", "postgres"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_BROKER_SCHEMES = {"redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp"}


class SettingsError(Exception):
    """The environment does not describe a configuration the product can start with."""


class Settings(BaseModel):
    """Validated configuration of one process. `None` URLs mean "use the embedded server"."""

    model_config = ConfigDict(frozen=True, validate_default=True)

    env: Environment = "development"
    home: Path = Path(".timo")
    database_url: str | None = None
    redis_url: str | None = None
    # `TIMO_REDIS_URL` names one node of a Redis Cluster; the client finds the others.
    redis_cluster: bool = False
    broker_url: str | None = None
    key_pepper: str = DEV_KEY_PEPPER
    secret_key: str = DEV_SECRET_KEY
    # Where people reach this server (links in invitations); None: http://127.0.0.1:8000.
    public_url: str | None = None
    # Where the dashboard tells customers to write (suspension, plan changes, a lost password).
    support_email: str | None = None
    # Whole months of raw events kept (usage_daily keeps everything); None keeps them all.
    events_retention_months: int | None = 13
    # Bearer token for the web's `/metrics`; without one that endpoint does not exist.
    metrics_token: str | None = None
    # Where a Celery worker serves its metrics; no port, no server.
    # 0 lets the system pick a free port, as prometheus-client's server allows.
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    worker_metrics_addr: str = "127.0.0.1"
    # `json` or `plain`; None picks by `env` (JSON in production). Unknown values pick by `env` too.
    log_format: str | None = None
    # A logging level name; an unknown one means INFO (logging must not stop a process starting).
    log_level: str = "INFO"
    # Reverse proxies in front of the web process whose `X-Forwarded-For`/`-Proto` to believe
    # (werkzeug's ProxyFix). 0 believes none: the client address is the socket's peer.
    trusted_proxies: int = Field(default=0, ge=0, le=10)
    # How often each web process forces its spooled events to disk (fsync): an OS crash or power
    # loss can lose at most this much of answered calls' events. 0: never (the OS writes them
    # back within ~30 s by itself); a process crash loses none either way.
    spool_sync_seconds: float = Field(default=1.0, ge=0, le=60)
    # How long a web worker waits for a whole request (line, headers, body) from the moment it
    # accepts the connection; a client slower than this gets a 408 and never reaches the app.
    request_read_seconds: float = Field(default=10.0, gt=0, le=300)
    # Webhooks may go to private, loopback and link-local addresses (and, outside production, over
    # plain http): for tests and a laptop, never for a server that reaches an internal network.
    webhooks_allow_private: bool = False
    # How long one webhook attempt may take in all (connect, TLS, request, response).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    # Accounts per chunk of the nightly forecast run (`timo_hub.usage.forecast_runs`, whose
    # `DEFAULT_CHUNK_SIZE` this default is): one chunk task's work.
    forecast_chunk_size: int = Field(default=500, ge=1, le=100_000)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, url: str | None) -> str | None:
        return _check_scheme("TIMO_DATABASE_URL", url, _DATABASE_SCHEMES)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        return _check_scheme("TIMO_REDIS_URL", url, _REDIS_SCHEMES)

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, url: str | None) -> str | None:
        return _check_scheme("TIMO_BROKER_URL", url, _BROKER_SCHEMES)

    @field_validator("events_retention_months", mode="before")
    @classmethod
    def _retention(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in {"none", "forever", "0"}:
            return None
        return value

    @field_validator("events_retention_months")
    @classmethod
    def _retention_positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("TIMO_EVENTS_RETENTION_MONTHS must be at least 1 (or 'forever')")
        return value

    @field_validator("key_pepper")
    @classmethod
    def _pepper_not_empty(cls, pepper: str) -> str:
        if not pepper:
            raise ValueError("TIMO_KEY_PEPPER must not be empty")
        return pepper

    @field_validator("secret_key")
    @classmethod
    def _secret_key_not_empty(cls, secret: str) -> str:
        if not secret:
            raise ValueError("TIMO_SECRET_KEY must not be empty")
        return secret

    @field_validator("support_email")
    @classmethod
    def _support_email(cls, email: str | None) -> str | None:
        if email is not None and ("@" not in email or any(c in email for c in " <>\"'\n")):
            raise ValueError("TIMO_SUPPORT_EMAIL must be an email address")
        return email

    @field_validator("public_url")
    @classmethod
    def _public_url_scheme(cls, url: str | None) -> str | None:
        checked = _check_scheme("TIMO_PUBLIC_URL", url, {"http", "https"})
        return checked.rstrip("/") if checked else None

    @model_validator(mode="after")
    def _cluster_is_named(self) -> Settings:
        if self.redis_cluster:
            if self.redis_url is None:
                raise ValueError(
                    "TIMO_REDIS_CLUSTER=true needs TIMO_REDIS_URL naming one node of the cluster "
                    "(the embedded Redis is a single server)"
                )
            if urlsplit(self.redis_url).scheme == "unix":
                raise ValueError("TIMO_REDIS_CLUSTER=true needs a redis:// or rediss:// URL")
        return self

    @model_validator(mode="after")
    def _production_has_no_dev_defaults(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.database_url is None:
            problems.append(
                "TIMO_DATABASE_URL is required (embedded PostgreSQL is for development)"
            )
        if self.redis_url is None:
            problems.append("TIMO_REDIS_URL is required (embedded Redis is for development)")
        if self.key_pepper == DEV_KEY_PEPPER:
            problems.append("TIMO_KEY_PEPPER must be set to a secret, not the development default")
        elif len(self.key_pepper) < MIN_PRODUCTION_PEPPER_LENGTH:
            problems.append(
                f"TIMO_KEY_PEPPER must be at least {MIN_PRODUCTION_PEPPER_LENGTH} characters"
            )
        if self.secret_key == DEV_SECRET_KEY:
            problems.append("TIMO_SECRET_KEY must be set to a secret, not the development default")
        elif len(self.secret_key) < MIN_PRODUCTION_SECRET_KEY_LENGTH:
            problems.append(
                f"TIMO_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_KEY_LENGTH} characters"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def base_url(self) -> str:
        """Where people reach this server, without a trailing slash (for links we print)."""
        return self.public_url or "http://127.0.0.1:8000"

    @property
    def uses_embedded_services(self) -> bool:
        """True when PostgreSQL or Redis still has to come from an embedded server."""
        return self.database_url is None or self.redis_url is None

    @property
    def effective_broker_url(self) -> str:
        """The broker URL; without `TIMO_BROKER_URL` it is the Redis of `TIMO_REDIS_URL`."""
        if self.broker_url:
            return self.broker_url
        if self.redis_cluster:
            # kombu's Redis transport speaks to one server, not to a cluster.
            raise SettingsError(
                "no broker: a Redis Cluster cannot be the broker; set TIMO_BROKER_URL "
                "(RabbitMQ, amqp://...)"
            )
        if self.redis_url is None:
            raise SettingsError("no broker: neither TIMO_BROKER_URL nor TIMO_REDIS_URL is known")
        return broker_url_for_redis(self.redis_url)

    def with_services(self, *, database_url: str, redis_url: str) -> Settings:
        """A copy that names concrete servers (used once embedded servers have started)."""
        return self.model_copy(update={"database_url": database_url, "redis_url": redis_url})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read and validate the `TIMO_*` variables; `overrides` win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field, variable in _VARIABLES.items():
            raw = environ.get(variable)
            if raw is not None and raw.strip() != "":
                values[field] = raw.strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


_VARIABLES = {
    "env": "TIMO_ENV",
    "home": "TIMO_HOME",
    "database_url": "TIMO_DATABASE_URL",
    "redis_url": "TIMO_REDIS_URL",
    "redis_cluster": "TIMO_REDIS_CLUSTER",
    "broker_url": "TIMO_BROKER_URL",
    "key_pepper": "TIMO_KEY_PEPPER",
    "secret_key": "TIMO_SECRET_KEY",
    "public_url": "TIMO_PUBLIC_URL",
    "support_email": "TIMO_SUPPORT_EMAIL",
    "events_retention_months": "TIMO_EVENTS_RETENTION_MONTHS",
    "metrics_token": "TIMO_METRICS_TOKEN",
    "worker_metrics_port": "TIMO_WORKER_METRICS_PORT",
    "worker_metrics_addr": "TIMO_WORKER_METRICS_ADDR",
    "log_format": "TIMO_LOG_FORMAT",
    "log_level": "TIMO_LOG_LEVEL",
    "trusted_proxies": "TIMO_TRUSTED_PROXIES",
    "spool_sync_seconds": "TIMO_SPOOL_SYNC_SECONDS",
    "request_read_seconds": "TIMO_REQUEST_READ_SECONDS",
    "webhooks_allow_private": "TIMO_WEBHOOKS_ALLOW_PRIVATE",
    "webhook_timeout_seconds": "TIMO_WEBHOOK_TIMEOUT_SECONDS",
    "forecast_chunk_size": "TIMO_FORECAST_CHUNK_SIZE",
}


def broker_url_for_redis(redis_url: str) -> str:
    """Translate a redis-py URL into the kombu spelling of the same server and database."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    # redis-py writes sockets as unix:///path?db=N, kombu as redis+socket:///path?virtual_host=N.
    query = parts.query.replace("db=", "virtual_host=")
    return f"redis+socket://{parts.path}" + (f"?{query}" if query else "")


def _check_scheme(variable: str, url: str | None, schemes: set[str]) -> str | None:
    if url is None:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        allowed = ", ".join(sorted(f"{s}://" for s in schemes))
        raise ValueError(
            f"{variable} must start with one of {allowed} (got {scheme or 'no'} scheme)"
        )
    return url


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = error["loc"][0] if error["loc"] else None
        variable = _VARIABLES.get(str(field), "configuration")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "literal_error":
            message = "must be one of development, test, production"
        lines.append(f"{variable}: {message}" if field else message)
    return "invalid configuration: " + "; ".join(lines)
