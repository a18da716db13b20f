"""The log tail the system page shows: the daemon's recent log lines, kept in memory.

The appliance never logs secrets or face data by design; as a second line of defence,
anything shaped like a credential (API tokens, setup codes, long hex or base64 runs such
as keys or image data) is blanked before a line is kept, so the page cannot leak what a
careless log call might one day print.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from typing import Any

LINES = 500
_SECRETS = re.compile(
    r"(?P<label>(?i:setup code)\s+|(?i:password|secret|token|key)\s*[=:]\s*)\S+"
    r"|apl_[\w-]+"  # API tokens
    r"|[A-Za-z0-9+/=_-]{40,}"  # keys, signatures, base64 images
)


def redact(text: str) -> str:
    return _SECRETS.sub(lambda m: (m.group("label") or "") + "[redacted]", text)


class LogTail(logging.Handler):
    def __init__(self, lines: int = LINES) -> None:
        super().__init__(logging.INFO)
        self._lines: collections.deque[dict[str, Any]] = collections.deque(maxlen=lines)
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = redact(record.getMessage())
        except Exception:  # a bad format string must not break logging
            return
        with self._lock2:
            self._lines.append(
                {
                    "at": round(record.created, 3),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": msg,
                }
            )

    def tail(self, n: int = 200, level: str | None = None) -> list[dict[str, Any]]:
        with self._lock2:
            lines = list(self._lines)
        if level:
            want = logging.getLevelName(level.upper())
            if isinstance(want, int):
                lines = [x for x in lines if logging.getLevelName(x["level"]) >= want]
        return lines[-n:]
