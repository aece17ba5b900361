"""The period picker shared by the usage pages: ?period=7d|30d|90d|month|custom&start=&end=."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request

from a2agent.console.queries import today

PRESETS = {"7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30), "90d": ("Last 90 days", 90)}
MAX_DAYS = 400


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def query(self, **extra: Any) -> str:
        params: dict[str, Any] = {"period": self.key}
        if self.key == "custom":
            params.update(start=self.start.isoformat(), end=self.end.isoformat())
        params.update({k: v for k, v in extra.items() if v not in (None, "")})
        return urlencode(params)


def _date(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def period_from(request: Request, default: str = "30d") -> Period:
    q = request.query_params
    key = q.get("period", default)
    end = today()
    if key == "month":
        return Period("month", "This month", end.replace(day=1), end)
    if key == "custom":
        start, stop = _date(q.get("start")), _date(q.get("end"))
        if start and stop:
            if stop < start:
                start, stop = stop, start
            start = max(start, stop - dt.timedelta(days=MAX_DAYS - 1))
            return Period("custom", f"{start.isoformat()} – {stop.isoformat()}", start, stop)
        key = default
    label, days = PRESETS.get(key, PRESETS[default])
    if key not in PRESETS:
        key = default
    return Period(key, label, end - dt.timedelta(days=days - 1), end)


CHOICES = [("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"), ("month", "This month")]
