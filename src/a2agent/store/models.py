"""SQLAlchemy models. Money is integer micro-USD everywhere (1 USD = 1_000_000).

Prompts and completions are never stored: request records hold metadata only.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from a2agent.auth.keys import mask  # pure formatting, no dependencies


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both SQLite (naive storage) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="user")  # user | admin
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    balance_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    # held for requests in flight (billing/reservation.py); released when each is settled
    reserved_micro: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    spend_limit_micro: Mapped[int | None] = mapped_column(BigInteger)  # per calendar month (UTC)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(32))  # display prefix, e.g. "sk-a2a-AbCd"
    last4: Mapped[str] = mapped_column(String(4))
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC-SHA-256 hex
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def masked(self) -> str:
        return mask(self.prefix, self.last4)


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(16))  # openai | anthropic
    base_url: Mapped[str] = mapped_column(String(500))
    api_key: Mapped[str | None] = mapped_column(Text)  # the upstream's credential
    extra_headers: Mapped[str | None] = mapped_column(Text)  # JSON object
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    connect_timeout: Mapped[float | None] = mapped_column(Float)
    first_byte_timeout: Mapped[float | None] = mapped_column(Float)
    idle_timeout: Mapped[float | None] = mapped_column(Float)
    total_timeout: Mapped[float | None] = mapped_column(Float)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    max_queue: Mapped[int | None] = mapped_column(Integer)  # waiting requests when at max_concurrency
    max_response_bytes: Mapped[int | None] = mapped_column(BigInteger)
    supports_reasoning: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), unique=True)
    context_window: Mapped[int | None] = mapped_column(Integer)
    max_output_tokens: Mapped[int | None] = mapped_column(Integer)  # clamps callers' max_tokens
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    price_id: Mapped[int | None] = mapped_column(Integer)  # current row in model_prices
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelPrice(Base):
    """Price history: a new row whenever a model's prices change. Rates: micro-USD per 1M tokens."""

    __tablename__ = "model_prices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    input_micro: Mapped[int] = mapped_column(BigInteger)
    output_micro: Mapped[int] = mapped_column(BigInteger)
    cache_read_micro: Mapped[int] = mapped_column(BigInteger)
    cache_write_micro: Mapped[int] = mapped_column(BigInteger)
    effective_from: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelRoute(Base):
    __tablename__ = "model_routes"
    __table_args__ = (UniqueConstraint("model_pk", "channel_id", name="uq_route_model_channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_pk: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"), index=True)
    upstream_model: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int | None] = mapped_column(Integer)  # None = the channel's
    weight: Mapped[int | None] = mapped_column(Integer)


class LedgerEntry(Base):
    """Append-only. kind: topup | charge | adjustment | refund | redeem | payment | grant.
    ``payment`` / ``refund`` entries of card payments point to their ``payments`` row and carry
    the Stripe object id in ``reference``."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_account_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    note: Mapped[str | None] = mapped_column(String(500))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Payment(Base):
    """One Stripe Checkout Session this gateway created. The unique session id and the
    conditional ``open → paid`` transition make crediting happen once per session."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    stripe_session_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_charge: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16))  # open | processing | paid | failed | expired
    requested_micro: Mapped[int] = mapped_column(BigInteger)  # what the account asked for
    amount_micro: Mapped[int] = mapped_column(BigInteger, default=0)  # credited (Stripe's total)
    refunded_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(8), default="usd")
    method: Mapped[str | None] = mapped_column(String(120))  # e.g. "visa •••• 4242"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class RequestRecord(Base):
    """One per API request; written 'pending' at admission, completed by settlement."""

    __tablename__ = "request_records"
    __table_args__ = (
        Index("ix_req_key_time", "key_id", "created_at"),
        Index("ix_req_account_time", "account_id", "created_at"),
        Index("ix_req_status", "status"),
        Index("ix_req_time", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str | None] = mapped_column(String(64))
    protocol: Mapped[str] = mapped_column(String(16))  # caller's protocol
    upstream_protocol: Mapped[str | None] = mapped_column(String(16))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(24), default="pending")
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_type: Mapped[str | None] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    input_estimate: Mapped[int] = mapped_column(Integer, default=0)
    cost_micro: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_micro: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # the hold
    price_id: Mapped[int | None] = mapped_column(Integer)
    usage_source: Mapped[str | None] = mapped_column(String(48))
    attempts: Mapped[str | None] = mapped_column(Text)  # JSON list: channel, outcome, latency
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    ttfb_ms: Mapped[int | None] = mapped_column(Integer)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    recovered: Mapped[bool] = mapped_column(Boolean, default=False)
    instance_id: Mapped[str | None] = mapped_column(String(120))  # serving process


class DailyUsage(Base):
    """Roll-up maintained by settlement in the same transaction; backs usage pages."""

    __tablename__ = "daily_usage"
    __table_args__ = (
        UniqueConstraint("day", "account_id", "key_id", "model", name="uq_daily_usage"),
        Index("ix_daily_account_day", "account_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    account_id: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(200))
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micro: Mapped[int] = mapped_column(BigInteger, default=0)


class RedemptionCode(Base):
    __tablename__ = "redemption_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    redeemed_by: Mapped[int | None] = mapped_column(Integer)
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ConsoleSession(Base):
    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie token
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AppSetting(Base):
    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class StateVersion(Base):
    """Monotonic counters bumped by every change that caches must observe (routes, etc.)."""

    __tablename__ = "state_versions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class Instance(Base):
    """Live gateway processes; a pending request of a process that stopped is recovered."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    channel_states: Mapped[str | None] = mapped_column(Text)  # JSON: breaker state per channel
