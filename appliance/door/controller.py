"""The door: when the relay unlocks and relocks, and what the contact says about the door.

Two parts. `DoorState` is a pure state machine: `step(now, event)` takes one input at a
monotonic time and returns what to do (`SetRelay`, `DoorEvent`), so every timing rule is
tested with a fake clock. `DoorController` runs it in its own thread, fed by a queue and
woken for its deadlines, so the exit button works while the camera read hangs or a frame
is being processed; the other threads only enqueue (`grant`, `unlock`, `set_passage`) or
read (`state`).

Rules:

- A grant or the exit button unlocks for `door.unlock_s`; a remote unlock for its own
  duration (at most `door.max_remote_unlock_s`). Another one while unlocked *extends*
  the deadline to the later of the two: the relay is never re-pulsed and times never add.
- Relock on close: a grant or exit-button unlock is for one passage. Once the door has
  opened after the unlock and shut again, the relay relocks at once instead of leaving
  the door unlocked for the rest of `unlock_s` for a second person. A remote unlock
  (someone asked for the door to stay open N seconds) and passage mode are not cut short.
- Passage mode (`set_passage(True)`) holds the relay unlocked until it is turned off.
- Contact: a change counts once the line has been steady for `door.debounce_s` (on top
  of gpiozero's bounce_time, which the mock pins do not implement and RPi.GPIO applies as
  a lock-out that can drop the final edge; the controller also re-reads the level every
  `CONTACT_POLL_S` for that). A chattering contact gives one opened/closed pair.
  `opened` while locked, later than `RELOCK_GRACE_S` after the relock (a strike needs a
  moment to catch, a person pushing through on the last second is not a break-in), is
  `forced_open`; open for `door.held_open_s` is `held_open`, once per opening (not in
  passage mode, where an open door is the point; the timer restarts when passage ends).
  `closed` clears the alarm. `opened`/`closed` are always sent, the alarms in addition.

The relay across restarts and power loss (systemd/README.md, "The door", says more):
the locked level is set when the pins are claimed and again on `stop()`; nothing unlocks
on start (gpio.py has the one microsecond-long caveat of lgpio). Between the daemon's exit
and the next start the line is released, and its level is up to the kernel and the relay
board. For `lock: fail_secure` (energised = unlocked) a released relay (held off by the
board's pull or a resistor, as systemd/README.md asks) or an unpowered one is
de-energised, so the door stays locked through a restart, a crash and a power cut. For
`lock: fail_safe` (energised = locked, a maglock on the relay's normally-open contact)
the door is UNLOCKED whenever the relay is not driven: during a restart (seconds to
minutes while models load), after a crash, with the Pi off.
That is what fail-safe means for fire exits; if it is not acceptable, wire the maglock
through the relay's normally-closed contact and set `lock: fail_secure` (the relay then
releases the maglock only when energised), or let a hardware access controller hold it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.config.schema import DoorConfig
from appliance.door.gpio import relay_energised

log = logging.getLogger(__name__)

RELOCK_GRACE_S = 1.0  # after a relock, an opening is not yet "forced" (the strike catches)
CONTACT_POLL_S = 0.5  # the contact level is re-read this often in case an edge was lost
STOP_JOIN_S = 5.0


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    event_id: str
    person_id: str | None
    name: str | None


@dataclass(frozen=True)
class Unlock:
    duration_s: float
    reason: str
    actor: str


@dataclass(frozen=True)
class ExitPressed:
    pass


@dataclass(frozen=True)
class ContactChanged:
    open: bool


@dataclass(frozen=True)
class SetPassage:
    open: bool


Input = Grant | Unlock | ExitPressed | ContactChanged | SetPassage


# --- outputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class SetRelay:
    unlocked: bool


@dataclass(frozen=True)
class DoorEvent:
    event: str  # unlocked | locked | opened | closed | forced_open | held_open
    reason: str | None = None  # granted | exit_button | remote | passage
    by: str | None = None
    name: str | None = None
    cause_event_id: str | None = None
    note: str | None = None  # a remote unlock's stated reason: for the log only


Output = SetRelay | DoorEvent


class DoorState:
    """The door's rules with time passed in: no thread, no clock, no pins."""

    def __init__(
        self,
        cfg: DoorConfig,
        now: float,
        contact_open: bool | None,
        grace_s: float = RELOCK_GRACE_S,
    ) -> None:
        self.cfg = cfg
        self.grace_s = grace_s
        self.unlocked = False
        self.passage = False
        self.pass_until: float | None = None  # grant / exit button: one passage
        self.hold_until: float | None = None  # remote unlock: its whole duration
        self.contact = contact_open  # debounced; None = no contact pin
        self.raw = contact_open  # the last level seen
        self.raw_since = now
        self.change_started: float | None = None  # when raw first left `contact`
        self.opened_at: float | None = now if contact_open else None
        self.opened_while_unlocked = False
        self.held_sent = False
        self.alarm: str | None = None
        self.relocked_at = now  # the pins were just set to the locked level

    def deadline(self) -> float | None:
        """The next time `step(now, None)` would change something, if any."""
        times = [t for t in (self.pass_until, self.hold_until) if t is not None]
        if self.raw != self.contact:
            times.append(self.raw_since + self.cfg.debounce_s)
        held = self._held_due()
        if held is not None:
            times.append(held)
        return min(times, default=None)

    def until(self) -> float | None:
        """When the relay relocks by itself (None: locked, or held by passage mode)."""
        if not self.unlocked or self.passage:
            return None
        return max((t for t in (self.pass_until, self.hold_until) if t is not None), default=None)

    def step(self, now: float, event: Input | None) -> list[Output]:
        out: list[Output] = []
        cause = DoorEvent("unlocked")
        match event:
            case Grant(event_id, person_id, name):
                self._one_pass(now)
                cause = DoorEvent("unlocked", "granted", person_id, name, event_id)
            case ExitPressed():
                self._one_pass(now)
                cause = DoorEvent("unlocked", "exit_button")
            case Unlock(duration_s, reason, actor):
                self.hold_until = _later(self.hold_until, now + duration_s)
                cause = DoorEvent("unlocked", "remote", actor, note=reason)
            case SetPassage(open=True):
                self.passage = True
                cause = DoorEvent("unlocked", "passage")
            case SetPassage(open=False):
                if self.passage and self.contact:
                    self.opened_at = now  # the held-open timer starts at the end of passage
                self.passage = False
            case ContactChanged(level):
                self._raw(now, level)
        self._settle(now, out)
        self._relay(now, cause, out)
        self._held(now, out)
        return out

    def _one_pass(self, now: float) -> None:
        self.pass_until = _later(self.pass_until, now + self.cfg.unlock_s)
        # An opening already under way (the last person still in the door) is not this
        # grant's passage: its close must not relock before the new person is through.
        self.opened_while_unlocked = False

    def _raw(self, now: float, level: bool) -> None:
        if level == self.raw:
            return
        self.raw = level
        self.raw_since = now
        if level == self.contact:
            self.change_started = None  # back where it was: a bounce, not a change
        elif self.change_started is None:
            self.change_started = now

    def _settle(self, now: float, out: list[Output]) -> None:
        if self.raw == self.contact or now < self.raw_since + self.cfg.debounce_s:
            return
        started = self.change_started if self.change_started is not None else self.raw_since
        self.change_started = None
        self.contact = self.raw
        if self.contact:
            self.opened_at = started
            self.held_sent = False
            out.append(DoorEvent("opened"))
            if self.unlocked:
                self.opened_while_unlocked = True
            elif started > self.relocked_at + self.grace_s:
                self.alarm = "forced_open"
                out.append(DoorEvent("forced_open"))
        else:
            self.opened_at = None
            self.alarm = None
            out.append(DoorEvent("closed"))
            if self.opened_while_unlocked:
                self.pass_until = None  # relock on close: the passage is done
                self.opened_while_unlocked = False

    def _relay(self, now: float, cause: DoorEvent, out: list[Output]) -> None:
        if self.pass_until is not None and now >= self.pass_until:
            self.pass_until = None
        if self.hold_until is not None and now >= self.hold_until:
            self.hold_until = None
        want = self.passage or self.pass_until is not None or self.hold_until is not None
        if want == self.unlocked:
            return
        self.unlocked = want
        out.append(SetRelay(want))
        if want:
            out.append(cause)
        else:
            self.relocked_at = now
            self.opened_while_unlocked = False
            out.append(DoorEvent("locked"))

    def _held_due(self) -> float | None:
        if not self.contact or self.held_sent or self.passage or self.opened_at is None:
            return None
        return self.opened_at + self.cfg.held_open_s

    def _held(self, now: float, out: list[Output]) -> None:
        due = self._held_due()
        if due is not None and now >= due:
            self.held_sent = True
            self.alarm = self.alarm or "held_open"
            out.append(DoorEvent("held_open"))


class Pins(Protocol):
    """What the controller needs of `appliance.door.gpio.GpioPins`."""

    def set_relay(self, energised: bool) -> None: ...
    def contact_open(self) -> bool | None: ...
    def on_contact(self, cb: Callable[[bool], None]) -> None: ...
    def on_exit(self, cb: Callable[[], None]) -> None: ...
    def close(self) -> None: ...


_STOP = object()


class DoorController:
    """`DoorState` on its own thread, driving the pins and reporting door events.

    `emit(payload)` is called from the door thread for each event; it must not block for
    long (the exit button waits behind it). A failing `emit` is logged and the door goes on.
    """

    def __init__(
        self,
        cfg: DoorConfig,
        pins: Pins,
        emit: Callable[[dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.pins = pins
        self.emit = emit
        self.clock = clock
        self.wall = wall
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._door = DoorState(cfg, clock(), pins.contact_open())
        self._has_contact = self._door.contact is not None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # --- API for the other threads ---------------------------------------------------

    def start(self) -> None:
        self.pins.on_contact(lambda level: self._queue.put(ContactChanged(level)))
        self.pins.on_exit(lambda: self._queue.put(ExitPressed()))
        self._thread = threading.Thread(target=self._run, name="door", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Relock, report it, release the pins. Safe to call twice, or without start()."""
        if self._stopped:
            return
        self._stopped = True
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(STOP_JOIN_S)
            if thread.is_alive():
                log.error("door thread did not stop; relocking from %s", threading.current_thread())
        self._relock_for_stop()
        self.pins.close()

    def grant(self, event_id: str, person_id: str | None, name: str | None) -> None:
        self._queue.put(Grant(event_id, person_id, name))

    def unlock(self, duration_s: float, reason: str, actor: str) -> None:
        """A remote unlock; a duration out of range is refused here and changes nothing."""
        limit = self.cfg.max_remote_unlock_s
        number = isinstance(duration_s, int | float) and not isinstance(duration_s, bool)
        if not (number and 0 < duration_s <= limit):
            raise ValueError(
                f"unlock: duration_s must be more than 0 and at most {limit:g} s "
                f"(door.max_remote_unlock_s), got {duration_s!r}"
            )
        self._queue.put(Unlock(float(duration_s), reason, actor))

    def set_passage(self, open: bool) -> None:
        self._queue.put(SetPassage(bool(open)))

    def state(self) -> dict[str, Any]:
        with self._lock:
            d = self._door
            until = d.until()
            return {
                "relay": "unlocked" if d.unlocked else "locked",
                "contact": _contact_name(d.contact),
                "alarm": d.alarm,
                "passage": d.passage,
                "unlocked_until": (
                    None if until is None else round(self.wall() + until - self.clock(), 3)
                ),
            }

    # --- the door thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                deadline = self._door.deadline()
            timeout = CONTACT_POLL_S if self._has_contact else None
            if deadline is not None:
                wait = max(0.0, deadline - self.clock())
                timeout = wait if timeout is None else min(timeout, wait)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            try:
                if item is None and self._has_contact:
                    level = self.pins.contact_open()
                    if level is not None and level != self._door.raw:
                        item = ContactChanged(level)
                self._step(item)
            except Exception:
                log.exception("door step failed on %r", item)

    def _step(self, item: Input | None) -> None:
        payloads = []
        with self._lock:
            for out in self._door.step(self.clock(), item):
                if isinstance(out, SetRelay):
                    self.pins.set_relay(relay_energised(self.cfg.lock, out.unlocked))
                else:
                    payloads.append(self._payload(out))
        for p in payloads:
            self._emit(p)

    def _relock_for_stop(self) -> None:
        with self._lock:
            d = self._door
            was_unlocked = d.unlocked
            d.unlocked = d.passage = False
            d.pass_until = d.hold_until = None
            self.pins.set_relay(relay_energised(self.cfg.lock, unlocked=False))
            payload = self._payload(DoorEvent("locked")) if was_unlocked else None
        if payload is not None:
            self._emit(payload)

    def _payload(self, ev: DoorEvent) -> dict[str, Any]:
        d = self._door
        if ev.event in ("unlocked", "locked"):
            # The benchmark and the daemon test parse these two prefixes: keep them.
            if ev.event == "unlocked":
                log.info(
                    "door relay: unlocked (%s%s%s)",
                    ev.reason,
                    f", by {ev.by}" if ev.by else "",
                    f": {ev.note}" if ev.note else "",
                )
            else:
                log.info("door relay: locked")
        else:
            log.info("door %s", ev.event)
        return {
            "event_id": str(uuid.uuid4()),
            "type": "door",
            "event": ev.event,
            "reason": ev.reason,
            "by": ev.by,
            "name": ev.name,
            "cause_event_id": ev.cause_event_id,
            "at": round(self.wall(), 3),
            "relay": "unlocked" if d.unlocked else "locked",
            "contact": _contact_name(d.contact),
        }

    def _emit(self, payload: dict[str, Any]) -> None:
        try:
            self.emit(payload)
        except Exception:
            log.exception("door event %s could not be handed on", payload["event"])


def _later(deadline: float | None, new: float) -> float:
    """Extend, never shorten and never add: the later of the two deadlines."""
    return new if deadline is None else max(deadline, new)


def _contact_name(contact: bool | None) -> str:
    return "unknown" if contact is None else "open" if contact else "closed"
