"""The door's GPIO lines: the one module that imports gpiozero.

gpiozero is imported inside `GpioPins.__init__`, so a door-less appliance (attendance,
`door.enabled: false`) never loads it. gpiozero picks its pin factory itself: lgpio on a Pi
(the kernel's /dev/gpiochip* interface; Raspberry Pi OS ships it as python3-lgpio), or the
one named by `GPIOZERO_PIN_FACTORY`. Tests and the daemon test run on its `mock` factory.

Wiring this module assumes (systemd/README.md, "The door", says more):

- relay: an output, `door.relay_active_high` says whether the relay board's input is
  energised by a high level. The locked level is the output's *initial* level, so the
  daemon never unlocks on start. One gap, in gpiozero 2.0.1's lgpio pin: it claims the
  line as an output at low and writes the level in the next call, so an active-low board
  sees low for the microseconds between two system calls (a relay needs milliseconds to
  pull in); an active-high board (the default) sees no change at all. On release (close,
  exit) lgpio leaves the line an input without pull: the board's own pull, or a resistor
  to its de-energised level, must hold it then.
- door contact: an input with the internal pull-up and the contact wired to GND. With the
  usual door contact (closed while the magnet is near, i.e. the door is shut) a shut door
  reads low and an open door (or a cut wire) reads high: `door.contact_open_high: true`.
- exit button: a push button to GND, internal pull-up (pressed = low).

`APPLIANCE_DOOR_SIM`: with the mock pin factory only, a thread reads commands from the
file it names and drives the mock pins, so a whole daemon can be tested without hardware
(see `_SimDriver`). With a real pin factory it is ignored, with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.config.schema import DoorConfig

log = logging.getLogger(__name__)

SIM_ENV = "APPLIANCE_DOOR_SIM"
SIM_POLL_S = 0.05  # how often the simulator looks for new lines in its file


class DoorError(RuntimeError):
    """The door hardware cannot be used as configured; the message names the config key."""


def relay_energised(lock: str, unlocked: bool) -> bool:
    """The relay level that means `unlocked` for this lock type.

    fail_secure (an electric strike, or a maglock wired through the relay's normally-closed
    contact): power releases, so energised = unlocked. fail_safe (a maglock on the relay's
    normally-open contact): power holds, so energised = locked.
    """
    return unlocked if lock == "fail_secure" else not unlocked


class GpioPins:
    """Relay, door contact and exit button on gpiozero devices.

    Callbacks given to `on_contact`/`on_exit` run on gpiozero's event thread (or, on the
    mock factory, in whichever thread drives the pin): they must only hand the event on.
    """

    def __init__(self, cfg: DoorConfig) -> None:
        import gpiozero  # lazily: only a configured door needs it
        from gpiozero.pins.mock import MockFactory

        _load_pin_factory(gpiozero)
        self.cfg = cfg
        self._devices: list[Any] = []
        self._contact: Any = None
        self._exit: Any = None
        self._sim: _SimDriver | None = None
        try:
            self._relay = self._claim(
                "relay_pin",
                lambda: gpiozero.OutputDevice(
                    cfg.relay_pin,
                    active_high=cfg.relay_active_high,
                    initial_value=relay_energised(cfg.lock, unlocked=False),
                ),
            )
            bounce = cfg.debounce_s or None
            if cfg.contact_pin is not None:
                pin = cfg.contact_pin
                self._contact = self._claim(
                    "contact_pin",
                    lambda: gpiozero.DigitalInputDevice(pin, pull_up=True, bounce_time=bounce),
                )
            if cfg.exit_pin is not None:
                pin = cfg.exit_pin
                self._exit = self._claim(
                    "exit_pin", lambda: gpiozero.Button(pin, pull_up=True, bounce_time=bounce)
                )
        except BaseException:
            self.close()
            raise
        factory = self._relay.pin_factory
        log.info(
            "door pins: relay GPIO%d (%s, active %s), contact %s, exit button %s, via %s",
            cfg.relay_pin,
            cfg.lock,
            "high" if cfg.relay_active_high else "low",
            f"GPIO{cfg.contact_pin}" if cfg.contact_pin is not None else "none",
            f"GPIO{cfg.exit_pin}" if cfg.exit_pin is not None else "none",
            type(factory).__name__,
        )
        sim = os.environ.get(SIM_ENV)
        if sim:
            if isinstance(factory, MockFactory):
                self._sim = _SimDriver(Path(sim), self)
                self._sim.start()
            else:
                log.warning(
                    "%s is ignored: the pin factory is %s, not gpiozero's mock",
                    SIM_ENV,
                    type(factory).__name__,
                )

    def _claim(self, key: str, make: Callable[[], Any]) -> Any:
        """Build one device; any failure becomes a DoorError naming the config key."""
        from gpiozero import GPIOPinInUse, PinInvalidPin

        pin = getattr(self.cfg, key)
        try:
            device = make()
        except GPIOPinInUse:
            raise DoorError(f"door.{key}: GPIO{pin} is already in use") from None
        except PinInvalidPin:
            raise DoorError(f"door.{key}: GPIO{pin} is not a pin of this board") from None
        except Exception as exc:
            # lgpio reports a line another process holds as "GPIO busy"; the pin
            # factory's own failures (no /dev/gpiochip access) land here too.
            raise DoorError(f"door.{key}: GPIO{pin} cannot be used: {exc}") from exc
        self._devices.append(device)
        return device

    def set_relay(self, energised: bool) -> None:
        self._relay.value = energised

    def relay_energised(self) -> bool:
        return bool(self._relay.value)

    def _level_open(self, high: bool) -> bool:
        return high == self.cfg.contact_open_high

    def contact_open(self) -> bool | None:
        """The door contact now: True = open; None when no contact pin is configured."""
        if self._contact is None:
            return None
        # pull_up=True makes gpiozero's value "1 when low"; the level is its negation.
        return self._level_open(not self._contact.value)

    def on_contact(self, cb: Callable[[bool], None]) -> None:
        if self._contact is None:
            return
        self._contact.when_activated = lambda: cb(self._level_open(False))
        self._contact.when_deactivated = lambda: cb(self._level_open(True))

    def on_exit(self, cb: Callable[[], None]) -> None:
        if self._exit is not None:
            self._exit.when_pressed = lambda: cb()

    def close(self) -> None:
        """Leave the relay at the locked level and release every line.

        Releasing the relay's line hands its level to the kernel and the board: a
        fail_safe maglock held by an energised relay may then drop (systemd/README.md).
        """
        if self._sim is not None:
            self._sim.stop()
            self._sim = None
        for device in reversed(self._devices):
            if device is getattr(self, "_relay", None):
                with contextlib.suppress(Exception):
                    device.value = relay_energised(self.cfg.lock, unlocked=False)
            try:
                device.close()
            except Exception:
                log.exception("closing a door pin failed")
        self._devices.clear()


def _load_pin_factory(gpiozero: Any) -> None:
    """Load gpiozero's pin factory now, so that its failure is one clear DoorError.

    lgpio's Python module makes a notification FIFO (`.lgd-nfy*`) when it is imported, in
    $LG_WD or else the current directory, and chdir()s the whole process there. Under
    the unit's ProtectSystem=strict the current directory (/) is read-only, the import
    fails and gpiozero would fall back to factories that cannot work either. So LG_WD
    defaults to a private temporary directory (PrivateTmp= makes /tmp the service's own),
    and the working directory is put back afterwards.
    """
    if gpiozero.Device.pin_factory is not None:
        return
    lgpio = os.environ.get("GPIOZERO_PIN_FACTORY", "lgpio").lower() == "lgpio"
    if lgpio and "LG_WD" not in os.environ:
        os.environ["LG_WD"] = tempfile.mkdtemp(prefix="appliance-lgpio-")
    cwd = os.getcwd()
    with warnings.catch_warnings(record=True) as fallbacks:
        warnings.simplefilter("always", gpiozero.PinFactoryFallback)
        try:
            gpiozero.Device.ensure_pin_factory()
        except Exception as exc:
            tried = "; ".join(str(w.message) for w in fallbacks)
            raise DoorError(
                f"door: no GPIO pin factory could be loaded ({exc}"
                f"{': ' + tried if tried else ''}). On a Pi: apt install python3-lgpio, "
                "and the venv needs --system-site-packages (tools/install.sh does both)"
            ) from exc
        finally:
            if os.getcwd() != cwd:
                os.chdir(cwd)
    for w in fallbacks:
        log.warning("gpiozero: %s", w.message)


class _SimDriver(threading.Thread):
    """The test double behind the adapter: commands from a file drive the mock pins.

    The file is a plain file that the test appends lines to (not a FIFO: a FIFO's open
    blocks until a writer comes, and a stuck open would keep the thread from stopping).
    It is created empty if missing and read from its start, one command per line:
    `exit` presses and releases the exit button, `open` and `close` set the door
    contact. A mock input with the pull-up and nothing driving it reads high, so the door
    starts "open" (like a cut wire): write `close` first. Only started when the pin
    factory is gpiozero's MockFactory.
    """

    def __init__(self, path: Path, pins: GpioPins) -> None:
        super().__init__(name="door-sim", daemon=True)
        self.path = path
        self.pins = pins
        self._halt = threading.Event()
        path.touch(exist_ok=True)
        log.warning("door simulator: mock pins driven by commands in %s", path)

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(5)

    def run(self) -> None:
        offset = 0
        partial = b""
        while not self._halt.wait(SIM_POLL_S):
            try:
                with self.path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError as exc:
                log.warning("door simulator: cannot read %s: %s", self.path, exc.strerror)
                continue
            offset += len(data)
            *lines, partial = (partial + data).split(b"\n")
            for line in lines:
                self._command(line.decode("utf-8", "replace").strip())

    def _command(self, cmd: str) -> None:
        if not cmd:
            return
        p = self.pins
        if cmd == "exit" and p._exit is not None:
            p._exit.pin.drive_low()
            p._exit.pin.drive_high()
        elif cmd in ("open", "close") and p._contact is not None:
            high = (cmd == "open") == p.cfg.contact_open_high
            (p._contact.pin.drive_high if high else p._contact.pin.drive_low)()
        else:
            log.warning("door simulator: %r ignored (unknown, or its pin is not configured)", cmd)
            return
        log.info("door simulator: %s", cmd)
