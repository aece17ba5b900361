"""Settings: environment variables over an optional TOML file, validated into one typed object.

Every setting has an environment variable ``A2AGENT_<NAME>`` and a TOML key ``<name>``
(lower case, at the top level of the file). The environment wins over the file. A bad value
raises :class:`ConfigError` whose message is one line naming the setting and the problem.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

ENV_PREFIX = "A2AGENT_"


class ConfigError(ValueError):
    """A setting has a bad value; ``str(err)`` is one line naming it."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./.a2agent")
    database_url: str = ""  # filled in: sqlite file in data_dir
    redis_url: str | None = None
    secret_key: str = ""  # filled in: generated once and kept in data_dir
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    log_level: str = "info"
    # API edge
    max_body_bytes: int = 32 * 1024 * 1024
    trusted_proxies: str = ""  # comma-separated proxy addresses whose X-Forwarded-For is believed
    metrics_token: str | None = None  # bearer token for /metrics (unset: loopback peers only)
    # accounts and billing
    signup_enabled: bool = True
    account_max_concurrency: int = 64  # 0 = unlimited
    default_rpm: int = 0  # requests per minute per key and per account; 0 = unlimited
    default_tpm: int = 0  # tokens per minute per key and per account; 0 = unlimited
    default_max_output_tokens: int = 4096  # output cap reserved when a request sets none
    stream_checkpoint_seconds: float = 10.0  # how often a stream notes its relayed output
    disconnect_drain_seconds: float = 10.0
    shutdown_grace_seconds: float = 30.0
    signup_credit_usd: float = 0.0  # granted to each account created by sign-up (ledger: grant)
    low_balance_usd: float = 0.0  # console banner below this balance (and always at <= 0)
    # Stripe Checkout top-ups: both keys set = card payments on; neither = codes only
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None  # e.g. a stripe-mock; default: Stripe's own API
    topup_presets_usd: str = "5,10,25,50"  # buttons on the Billing page
    topup_min_usd: float = 5.0
    topup_max_usd: float = 1000.0
    # upstream defaults (channels may override)
    upstream_connect_timeout: float = 10.0
    upstream_first_byte_timeout: float = 120.0
    upstream_idle_timeout: float = 120.0
    upstream_total_timeout: float = 900.0
    upstream_max_response_bytes: int = 64 * 1024 * 1024
    max_attempts: int = 3
    # local model
    local_model: bool = True
    local_model_port: int = 0  # 0 = pick a free loopback port
    local_model_input_price: float = 0.0  # USD per 1M tokens
    local_model_output_price: float = 0.0
    local_model_queue: int = 4
    # db pool (PostgreSQL)
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # bounded waits on the database: a pooled connection (or SQLite's write lock held by
    # another process), and one PostgreSQL statement (0 = unbounded)
    db_acquire_timeout: float = 5.0
    db_statement_timeout: float = 10.0
    # answered requests whose settlement waits for the database to come back (per process)
    settlement_queue_max: int = 10000

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def payments_enabled(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_webhook_secret)

    @property
    def topup_presets(self) -> list[float]:
        return [float(x) for x in self.topup_presets_usd.split(",") if x.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


_WANT = {"bool": "true or false", "int": "an integer", "float": "a number"}


def _coerce(name: str, raw: Any, kind: str) -> Any:
    label = _env_name(name)
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            low = str(raw).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind in ("int", "float"):
            if isinstance(raw, bool):
                raise ValueError
            return (int if kind == "int" else float)(str(raw).strip())
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: expected {_WANT[kind]}, got {raw!r}") from None
    if kind == "Path":
        return Path(str(raw)).expanduser()
    if not isinstance(raw, str):
        raise ConfigError(f"{label}: expected a string, got {raw!r}")
    return raw


def _field_kind(name: str) -> str:
    annotation = _FIELDS[name].type
    text = annotation if isinstance(annotation, str) else annotation.__name__
    return text.split("|")[0].strip()


def normalize_database_url(url: str) -> str:
    """Map plain URLs to the async drivers the app uses; reject what we cannot serve."""
    label = _env_name("database_url")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if not url.split(":", 1)[1].startswith("///"):
            raise ConfigError(f"{label}: SQLite URLs look like sqlite:///path/to/file.db, got {url!r}")
        return "sqlite+aiosqlite:" + url.split(":", 1)[1]
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"{label}: PostgreSQL URL has no host: {url!r}")
        return "postgresql+asyncpg:" + url.split(":", 1)[1]
    raise ConfigError(
        f"{label}: unsupported scheme {scheme or '(none)'!r}; use sqlite:///FILE or postgresql://HOST/DB"
    )


def _check(settings: Settings) -> None:
    def bad(name: str, why: str) -> ConfigError:
        return ConfigError(f"{_env_name(name)}: {why}")

    if not 0 < settings.port < 65536:
        raise bad("port", f"must be between 1 and 65535, got {settings.port}")
    if settings.workers < 1:
        raise bad("workers", f"must be at least 1, got {settings.workers}")
    if settings.max_body_bytes < 1024:
        raise bad("max_body_bytes", f"must be at least 1024, got {settings.max_body_bytes}")
    for name in ("account_max_concurrency", "default_rpm", "default_tpm", "local_model_queue",
                 "db_statement_timeout"):
        if getattr(settings, name) < 0:
            raise bad(name, f"must not be negative, got {getattr(settings, name)}")
    if settings.default_max_output_tokens < 1:
        raise bad("default_max_output_tokens", f"must be at least 1, got {settings.default_max_output_tokens}")
    for name in (
        "upstream_connect_timeout",
        "upstream_first_byte_timeout",
        "upstream_idle_timeout",
        "upstream_total_timeout",
        "db_acquire_timeout",
        "stream_checkpoint_seconds",
    ):
        if getattr(settings, name) <= 0:
            raise bad(name, f"must be a positive number of seconds, got {getattr(settings, name)}")
    if settings.settlement_queue_max < 1:
        raise bad("settlement_queue_max", f"must be at least 1, got {settings.settlement_queue_max}")
    if settings.local_model_input_price < 0 or settings.local_model_output_price < 0:
        raise bad("local_model_input_price", "prices must not be negative")
    if settings.redis_url is not None:
        scheme = urlsplit(settings.redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise bad("redis_url", f"expected redis://HOST:PORT/DB, got {settings.redis_url!r}")
    if settings.public_url is not None:
        parts = urlsplit(settings.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("public_url", f"expected an http(s) URL, got {settings.public_url!r}")
    _check_money(settings, bad)
    if settings.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise bad("log_level", f"expected debug, info, warning or error, got {settings.log_level!r}")


def _check_money(settings: Settings, bad: Any) -> None:
    for name in ("signup_credit_usd", "low_balance_usd", "topup_min_usd", "topup_max_usd"):
        value = getattr(settings, name)
        if not 0 <= value <= 1_000_000 or round(value, 6) != value:
            raise bad(name, f"expected a USD amount from 0 to 1000000, got {value}")
    if settings.topup_min_usd < 0.5:
        raise bad("topup_min_usd", "Stripe's smallest USD charge is 0.50")
    if settings.topup_max_usd < settings.topup_min_usd:
        raise bad("topup_max_usd", "must not be below A2AGENT_TOPUP_MIN_USD")
    try:
        presets = settings.topup_presets
    except ValueError:
        raise bad("topup_presets_usd", f"expected USD amounts separated by commas, got "
                                       f"{settings.topup_presets_usd!r}") from None
    for value in presets:
        if not settings.topup_min_usd <= value <= settings.topup_max_usd or round(value, 2) != value:
            raise bad("topup_presets_usd", f"{value} is not a whole-cent amount between the "
                                           "top-up minimum and maximum")
    if bool(settings.stripe_secret_key) != bool(settings.stripe_webhook_secret):
        missing = "stripe_webhook_secret" if settings.stripe_secret_key else "stripe_secret_key"
        raise bad(missing, "Stripe needs both A2AGENT_STRIPE_SECRET_KEY and "
                           "A2AGENT_STRIPE_WEBHOOK_SECRET (or neither)")
    if settings.stripe_api_base is not None:
        parts = urlsplit(settings.stripe_api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad("stripe_api_base", f"expected an http(s) URL, got {settings.stripe_api_base!r}")


def _ensure_secret(data_dir: Path) -> str:
    path = data_dir / "secret_key"
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= 32:
            return value
    make_private_dir(data_dir)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    os.chmod(path, 0o600)
    return value


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    materialize: bool = True,
) -> Settings:
    """Build settings from (lowest to highest) defaults, TOML file, environment, overrides.

    ``materialize`` creates the data directory and the secret key file when needed.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"A2AGENT_CONFIG: file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"A2AGENT_CONFIG: {path} is not valid TOML: {exc}") from None
        for key, raw in data.items():
            name = key.lower()
            if name not in _FIELDS:
                raise ConfigError(f"A2AGENT_CONFIG: unknown setting {key!r} in {path}")
            values[name] = _coerce(name, raw, _field_kind(name))
    for name in _FIELDS:
        raw = env.get(_env_name(name))
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, _field_kind(name))
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = raw
    settings = Settings(**values)
    data_dir = settings.data_dir
    db_url = settings.database_url or f"sqlite:///{(data_dir / 'a2agent.db').resolve()}"
    settings = settings.replace(database_url=normalize_database_url(db_url))
    if not settings.secret_key:
        if materialize:
            settings = settings.replace(secret_key=_ensure_secret(data_dir))
        else:
            settings = settings.replace(secret_key="unset-" + "x" * 32)
    elif len(settings.secret_key) < 16:
        raise ConfigError("A2AGENT_SECRET_KEY: must be at least 16 characters")
    _check(settings)
    if materialize:
        make_private_dir(data_dir)
    return settings


def make_private_dir(path: Path) -> None:
    """The data directory (database, secret key, logs): created 0700, readable by its owner only."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)


__all__ = ["ConfigError", "Settings", "load_settings", "normalize_database_url"]
