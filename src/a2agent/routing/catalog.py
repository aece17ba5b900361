"""Channels, models, routes and prices.

The data plane reads an in-memory snapshot of the catalogue. Every change bumps the
``catalog`` row of ``state_versions`` in the same transaction, and the per-request key lookup
returns that version; a snapshot older than it is reloaded before the request is routed. So a
change committed by any process holds on the next request everywhere, with no cache to flush.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from a2agent.auth.accounts import Conflict, NotFound
from a2agent.auth.sealing import CredentialBox
from a2agent.billing.money import Prices
from a2agent.store.db import Database, affected
from a2agent.store.models import Channel, Model, ModelPrice, ModelRoute, StateVersion, utcnow

PROTOCOLS = ("openai", "anthropic", "responses")


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    name: str
    protocol: str
    base_url: str
    api_key: str | None
    extra_headers: dict[str, str]
    priority: int
    weight: int
    enabled: bool
    connect_timeout: float | None
    first_byte_timeout: float | None
    idle_timeout: float | None
    total_timeout: float | None
    max_concurrency: int | None
    supports_reasoning: bool
    max_queue: int | None = None
    max_response_bytes: int | None = None


@dataclass(frozen=True)
class Route:
    channel: ChannelInfo
    upstream_model: str
    priority: int
    weight: int


@dataclass(frozen=True)
class ModelEntry:
    model_id: str
    context_window: int | None
    prices: Prices
    routes: tuple[Route, ...]
    created_at: int = 0
    max_output_tokens: int | None = None  # the upstream's largest answer (clamps max_tokens)

    @property
    def protocols(self) -> list[str]:
        return sorted({r.channel.protocol for r in self.routes if r.channel.enabled})


@dataclass
class Snapshot:
    version: int = -1
    models: dict[str, ModelEntry] = field(default_factory=dict)
    channels: dict[str, ChannelInfo] = field(default_factory=dict)


def _channel_info(c: Channel, api_key: str | None) -> ChannelInfo:
    return ChannelInfo(
        id=c.id,
        name=c.name,
        protocol=c.protocol,
        base_url=c.base_url.rstrip("/"),
        api_key=api_key,
        extra_headers=json.loads(c.extra_headers) if c.extra_headers else {},
        priority=c.priority,
        weight=c.weight,
        enabled=c.enabled,
        connect_timeout=c.connect_timeout,
        first_byte_timeout=c.first_byte_timeout,
        idle_timeout=c.idle_timeout,
        total_timeout=c.total_timeout,
        max_concurrency=c.max_concurrency,
        supports_reasoning=c.supports_reasoning,
        max_queue=c.max_queue,
        max_response_bytes=c.max_response_bytes,
    )


def validate_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base URL must be an http(s) URL, got {url!r}")
    return url.strip().rstrip("/")


async def _bump(session: AsyncSession) -> None:
    result = await session.execute(
        update(StateVersion)
        .where(StateVersion.name == "catalog")
        .values(version=StateVersion.version + 1)
    )
    if affected(result) == 0:
        session.add(StateVersion(name="catalog", version=1))


class Catalog:
    def __init__(self, db: Database, box: CredentialBox | None = None) -> None:
        self.db = db
        self.box = box  # channel credentials sealed at rest (auth/sealing.py)
        self._snapshot = Snapshot()
        self._lock = asyncio.Lock()

    # ---- reading (hot path) --------------------------------------------------------------
    async def snapshot(self, version: int | None = None) -> Snapshot:
        """The current snapshot, reloaded when ``version`` (from the key lookup) is newer."""
        snap = self._snapshot
        if version is not None and snap.version == version:
            return snap
        async with self._lock:
            if version is not None and self._snapshot.version == version:
                return self._snapshot
            self._snapshot = await self._load()
            return self._snapshot

    async def _load(self) -> Snapshot:
        async with self.db.read() as s:
            version = await s.scalar(
                select(StateVersion.version).where(StateVersion.name == "catalog")
            )
            channels = {c.id: _channel_info(c, self._open(c.api_key))
                        for c in (await s.scalars(select(Channel))).all()}
            models = (await s.scalars(select(Model).where(Model.enabled.is_(True)))).all()
            prices = {
                p.id: p
                for p in (
                    await s.scalars(
                        select(ModelPrice).where(
                            ModelPrice.id.in_([m.price_id for m in models if m.price_id])
                        )
                    )
                ).all()
            }
            routes = (await s.scalars(select(ModelRoute))).all()
        by_model: dict[int, list[Route]] = {}
        for r in routes:
            ch = channels.get(r.channel_id)
            if ch is None:
                continue
            by_model.setdefault(r.model_pk, []).append(
                Route(
                    channel=ch,
                    upstream_model=r.upstream_model,
                    priority=r.priority if r.priority is not None else ch.priority,
                    weight=r.weight if r.weight is not None else ch.weight,
                )
            )
        entries: dict[str, ModelEntry] = {}
        for m in models:
            p = prices.get(m.price_id or -1)
            entries[m.model_id] = ModelEntry(
                model_id=m.model_id,
                context_window=m.context_window,
                prices=Prices(
                    input=p.input_micro if p else 0,
                    output=p.output_micro if p else 0,
                    cache_read=p.cache_read_micro if p else 0,
                    cache_write=p.cache_write_micro if p else 0,
                    price_id=p.id if p else None,
                ),
                routes=tuple(sorted(by_model.get(m.id, []), key=lambda r: -r.priority)),
                created_at=int(m.created_at.timestamp()),
                max_output_tokens=m.max_output_tokens,
            )
        return Snapshot(
            version=int(version or 0),
            models=entries,
            channels={c.name: c for c in channels.values()},
        )

    # ---- channels --------------------------------------------------------------------------
    async def add_channel(
        self,
        name: str,
        *,
        protocol: str,
        base_url: str,
        api_key: str | None = None,
        priority: int = 0,
        weight: int = 1,
        extra_headers: dict[str, str] | None = None,
        supports_reasoning: bool = False,
        timeouts: dict[str, float | None] | None = None,
        max_concurrency: int | None = None,
        max_queue: int | None = None,
    ) -> Channel:
        name = name.strip()
        if not name or len(name) > 64:
            raise ValueError("channel name must be 1 to 64 characters")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be openai or anthropic, got {protocol!r}")
        if weight < 1:
            raise ValueError(f"weight must be at least 1, got {weight}")
        base_url = validate_base_url(base_url)
        async with self.db.write() as s:
            if await s.scalar(select(Channel.id).where(Channel.name == name)) is not None:
                raise Conflict(f"a channel named {name} already exists")
            channel = Channel(
                name=name,
                protocol=protocol,
                base_url=base_url,
                api_key=self._seal(api_key),
                priority=priority,
                weight=weight,
                enabled=True,
                extra_headers=json.dumps(extra_headers) if extra_headers else None,
                supports_reasoning=supports_reasoning,
                max_concurrency=max_concurrency,
                max_queue=max_queue,
                created_at=utcnow(),
                **(timeouts or {}),
            )
            s.add(channel)
            await _bump(s)
        return channel

    async def update_channel(self, name: str, **values: object) -> None:
        allowed = {
            "base_url", "api_key", "priority", "weight", "enabled", "extra_headers",
            "connect_timeout", "first_byte_timeout", "idle_timeout", "total_timeout",
            "max_concurrency", "supports_reasoning", "max_queue", "max_response_bytes",
        }  # fmt: skip
        unknown = set(values) - allowed
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        if "base_url" in values:
            values["base_url"] = validate_base_url(str(values["base_url"]))
        if isinstance(values.get("extra_headers"), dict):
            values["extra_headers"] = json.dumps(values["extra_headers"])
        if "api_key" in values:
            values["api_key"] = self._seal(values["api_key"])  # type: ignore[arg-type]
        async with self.db.write() as s:
            result = await s.execute(update(Channel).where(Channel.name == name).values(**values))
            if affected(result) == 0:
                raise NotFound(f"no channel named {name}")
            await _bump(s)

    async def list_channels(self) -> list[Channel]:
        """Detached rows with their credentials opened (never written back)."""
        async with self.db.read() as s:
            channels = list((await s.scalars(select(Channel).order_by(Channel.id))).all())
        for c in channels:
            c.api_key = self._open(c.api_key)
        return channels

    async def get_channel(self, name: str) -> Channel:
        async with self.db.read() as s:
            channel = await s.scalar(select(Channel).where(Channel.name == name))
        if channel is None:
            raise NotFound(f"no channel named {name}")
        channel.api_key = self._open(channel.api_key)
        return channel

    # ---- credentials at rest ---------------------------------------------------------------
    def _seal(self, value: str | None) -> str | None:
        return self.box.seal(value) if self.box is not None else value

    def _open(self, value: str | None) -> str | None:
        return self.box.open(value) if self.box is not None else value

    async def seal_credentials(self) -> int:
        """Seal credentials stored in plain text (rows from before sealing). Returns how many."""
        if self.box is None:
            return 0
        async with self.db.write() as s:
            rows = (await s.execute(select(Channel.id, Channel.api_key))).all()
            plain = [(cid, key) for cid, key in rows if key and not self.box.is_sealed(key)]
            for cid, key in plain:
                await s.execute(update(Channel).where(Channel.id == cid).values(api_key=self.box.seal(key)))
        return len(plain)

    async def remove_channel(self, name: str) -> None:
        async with self.db.write() as s:
            channel = await s.scalar(select(Channel).where(Channel.name == name))
            if channel is None:
                raise NotFound(f"no channel named {name}")
            await s.execute(delete(ModelRoute).where(ModelRoute.channel_id == channel.id))
            await s.delete(channel)
            await _bump(s)

    # ---- models ----------------------------------------------------------------------------
    async def add_model(
        self,
        model_id: str,
        *,
        channel: str,
        prices: Prices,
        upstream_model: str | None = None,
        context_window: int | None = None,
        priority: int | None = None,
        weight: int | None = None,
        max_output_tokens: int | None = None,
    ) -> Model:
        """Create a model, or add another channel route to an existing one.

        Prices given for an existing model replace its current prices (a new price row).
        """
        model_id = model_id.strip()
        if not model_id or len(model_id) > 200 or any(c.isspace() for c in model_id):
            raise ValueError(f"model id must be 1 to 200 characters without spaces: {model_id!r}")
        for label, value in (
            ("input", prices.input),
            ("output", prices.output),
            ("cache read", prices.cache_read),
            ("cache write", prices.cache_write),
        ):
            if value < 0:
                raise ValueError(f"{label} price must not be negative")
        if context_window is not None and context_window < 1:
            raise ValueError("context window must be a positive number of tokens")
        if max_output_tokens is not None and max_output_tokens < 1:
            raise ValueError("max output must be a positive number of tokens")
        async with self.db.write() as s:
            ch = await s.scalar(select(Channel).where(Channel.name == channel))
            if ch is None:
                raise NotFound(f"no channel named {channel}")
            model = await s.scalar(select(Model).where(Model.model_id == model_id))
            if model is None:
                model = Model(model_id=model_id, context_window=context_window, enabled=True)
                s.add(model)
                await s.flush()
            elif context_window is not None:
                model.context_window = context_window
            if max_output_tokens is not None:
                model.max_output_tokens = max_output_tokens
            await self._set_price(s, model, prices)
            route = await s.scalar(
                select(ModelRoute).where(
                    ModelRoute.model_pk == model.id, ModelRoute.channel_id == ch.id
                )
            )
            if route is None:
                s.add(
                    ModelRoute(
                        model_pk=model.id,
                        channel_id=ch.id,
                        upstream_model=upstream_model or model_id,
                        priority=priority,
                        weight=weight,
                    )
                )
            else:
                route.upstream_model = upstream_model or route.upstream_model
                route.priority = priority if priority is not None else route.priority
                route.weight = weight if weight is not None else route.weight
            await _bump(s)
        return model

    @staticmethod
    async def _set_price(session: AsyncSession, model: Model, prices: Prices) -> None:
        if model.price_id is not None:
            current = await session.get(ModelPrice, model.price_id)
            if current is not None and (
                current.input_micro,
                current.output_micro,
                current.cache_read_micro,
                current.cache_write_micro,
            ) == (prices.input, prices.output, prices.cache_read, prices.cache_write):
                return
        row = ModelPrice(
            model_id=model.model_id,
            input_micro=prices.input,
            output_micro=prices.output,
            cache_read_micro=prices.cache_read,
            cache_write_micro=prices.cache_write,
            effective_from=utcnow(),
        )
        session.add(row)
        await session.flush()
        model.price_id = row.id

    async def set_prices(self, model_id: str, prices: Prices) -> None:
        async with self.db.write() as s:
            model = await s.scalar(select(Model).where(Model.model_id == model_id))
            if model is None:
                raise NotFound(f"no model named {model_id}")
            await self._set_price(s, model, prices)
            await _bump(s)

    async def remove_route(self, model_id: str, channel: str) -> None:
        async with self.db.write() as s:
            model = await s.scalar(select(Model).where(Model.model_id == model_id))
            ch = await s.scalar(select(Channel).where(Channel.name == channel))
            if model is None or ch is None:
                raise NotFound(f"no route {model_id} -> {channel}")
            await s.execute(
                delete(ModelRoute).where(
                    ModelRoute.model_pk == model.id, ModelRoute.channel_id == ch.id
                )
            )
            await _bump(s)

    async def remove_model(self, model_id: str) -> None:
        async with self.db.write() as s:
            model = await s.scalar(select(Model).where(Model.model_id == model_id))
            if model is None:
                raise NotFound(f"no model named {model_id}")
            await s.execute(delete(ModelRoute).where(ModelRoute.model_pk == model.id))
            await s.delete(model)
            await _bump(s)

    async def list_models(self) -> list[ModelEntry]:
        snap = await self.snapshot(await self.current_version())
        return sorted(snap.models.values(), key=lambda m: m.model_id)

    async def current_version(self) -> int:
        async with self.db.read() as s:
            return int(
                await s.scalar(select(StateVersion.version).where(StateVersion.name == "catalog"))
                or 0
            )
