"""The command bus: any thread submits, the frame loop runs.

TFLite interpreters are not thread-safe and the gallery has one writer, so transports
never run a command themselves. They submit it here and get a `Future`; the frame loop
drains the bus between frames. The queue is bounded: a flood answers `busy` instead of
growing memory or delaying the door. Jobs (`call_soon`, `call_later`) are the same idea
for side work such as re-sending Home Assistant discovery: no timer threads, nothing
that can delay shutdown.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from appliance.control.commands import Command, CommandError

log = logging.getLogger(__name__)


class CommandBus:
    def __init__(self, maxsize: int = 100) -> None:
        self._q: queue.Queue[tuple[Command, str, Future[Any]]] = queue.Queue(maxsize)
        self.busy = 0

    def submit(self, command: Command, actor: str) -> Future[Any]:
        """Queue `command` on behalf of `actor`; CommandError('busy') when full."""
        fut: Future[Any] = Future()
        try:
            self._q.put_nowait((command, actor, fut))
        except queue.Full:
            self.busy += 1
            raise CommandError("busy", "too many commands queued") from None
        return fut

    def drain(self, run: Callable[[Command, str], Any]) -> int:
        """Run every queued command (frame loop only). `run` returns a result, or a
        Future that completes later (a camera capture); either completes the caller's."""
        n = 0
        while True:
            try:
                command, actor, fut = self._q.get_nowait()
            except queue.Empty:
                return n
            n += 1
            try:
                result = run(command, actor)
            except CommandError as exc:
                fut.set_exception(exc)
                continue
            except Exception as exc:  # the last net: a command must never end the loop
                log.exception("command %s failed", type(command).__name__)
                fut.set_exception(CommandError("internal", f"internal error: {exc}"))
                continue
            if isinstance(result, Future):
                result.add_done_callback(lambda inner, outer=fut: _chain(inner, outer))
            else:
                fut.set_result(result)


def _chain(inner: Future[Any], outer: Future[Any]) -> None:
    exc = inner.exception()
    if exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())


class Jobs:
    """Side work for the frame loop, now or after a delay; any thread may schedule."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.call_later(0.0, fn)

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay_s, next(self._seq), fn))

    def run_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a failed side job must not stop the door
                log.exception("background job failed")

    def run_all(self) -> None:
        """At shutdown: what is due now or later runs now (e.g. clearing retained topics)."""
        with self._lock:
            jobs = [fn for _, _, fn in sorted(self._heap)]
            self._heap.clear()
        for fn in jobs:
            try:
                fn()
            except Exception:
                log.exception("background job failed at shutdown")
