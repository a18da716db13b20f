"""CSV exports a spreadsheet opens right, and the date-range parsing of the reports.

UTF-8 with a byte-order mark (Excel otherwise reads UTF-8 as the local code page and
mangles names), comma separated, every field quoted as needed by the csv module (names
with commas, quotes or new lines survive), ISO 8601 dates and times, CRLF line ends (RFC
4180). A cell that starts like a formula (=, +, -, @) is prefixed with a quote, so a name
cannot run a spreadsheet formula.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from typing import Any

BOM = "\ufeff"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    s = str(v)
    if isinstance(v, str) and s[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + s
    return s


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    for r in rows:
        w.writerow([_cell(v) for v in r])
    return (BOM + buf.getvalue()).encode("utf-8")


def iso(t: float | None, tz: dt.tzinfo | None) -> str:
    if t is None:
        return ""
    return dt.datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def day_range(
    start: str | None, end: str | None, tz: dt.tzinfo | None, default_days: int = 7
) -> tuple[float, float]:
    """ISO dates (inclusive) -> [since, until) timestamps in zone `tz`; ValueError with a
    message for people. Default: the last `default_days` days up to today."""
    today = dt.datetime.now(tz).date()
    try:
        last = dt.date.fromisoformat(end) if end else today
        first = (
            dt.date.fromisoformat(start) if start else last - dt.timedelta(days=default_days - 1)
        )
    except ValueError as exc:
        raise ValueError(f"dates are YYYY-MM-DD: {exc}") from None
    if first > last:
        raise ValueError(f"'from' {first} is after 'to' {last}")
    if (last - first).days > 3660:
        raise ValueError("at most ten years at once")
    since = dt.datetime.combine(first, dt.time(), tz).timestamp()
    until = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz).timestamp()
    return since, until
