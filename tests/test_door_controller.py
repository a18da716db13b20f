"""The door: timing rules on the pure DoorState with a fake clock; the thread, the pins
and the simulator on gpiozero's real mock pin factory (no hardware is faked elsewhere)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path

import pytest

from appliance.config.schema import ConfigError, DoorConfig, load, parse
from appliance.door import DoorController, DoorError, GpioPins, open_door
from appliance.door.controller import (
    RELOCK_GRACE_S,
    ContactChanged,
    DoorEvent,
    DoorState,
    ExitPressed,
    Grant,
    SetPassage,
    SetRelay,
    Unlock,
)
from appliance.door.gpio import SIM_ENV

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 10.0  # an upper bound for a thread to react, never a measured speed

RELAY, CONTACT, EXIT = 17, 22, 27
CFG = DoorConfig(enabled=True, relay_pin=RELAY, contact_pin=CONTACT, exit_pin=EXIT, debounce_s=0.0)


@pytest.fixture(autouse=True)
def mock_pins(monkeypatch):
    """A fresh gpiozero mock factory per test, chosen the way the daemon chooses it
    (GPIOZERO_PIN_FACTORY=mock). Mock pins keep their level and their `states` history
    when a device lets go of them, which the restart tests read."""
    from gpiozero import Device

    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.delenv(SIM_ENV, raising=False)
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = None
    Device.ensure_pin_factory()
    yield Device.pin_factory
    Device.pin_factory.close()
    Device.pin_factory = None


def pin(factory, n):
    return factory.pin(n)


def events(outs):
    return [o.event for o in outs if isinstance(o, DoorEvent)]


def relays(outs):
    return [o.unlocked for o in outs if isinstance(o, SetRelay)]


class Recorder:
    """emit() for the controller: the payloads, and a way to wait for one."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        self.threads: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, payload: dict) -> None:
        with self.cond:
            self.payloads.append(payload)
            self.threads.append(threading.current_thread().name)
            self.cond.notify_all()

    def wait_for(self, event: str, count: int = 1) -> list[dict]:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.of(event)) >= count, WAIT_S)
        assert ok, f"no {count}x {event!r} door event; got {self.names()}"
        return self.of(event)

    def of(self, event: str) -> list[dict]:
        return [p for p in self.payloads if p["event"] == event]

    def names(self) -> list[str]:
        return [p["event"] for p in self.payloads]


# --- the rules, with a fake clock -------------------------------------------------------


def rules(**kw) -> DoorConfig:
    """Settings for DoorState; contact changes count at once unless a test debounces."""
    return DoorConfig(**{"debounce_s": 0.0, **kw})


def test_grant_unlocks_for_unlock_s_then_relocks():
    s = DoorState(rules(unlock_s=5.0), now=100.0, contact_open=False)
    out = s.step(100.0, Grant("ev1", "p1", "Ann"))
    assert relays(out) == [True]
    ev = next(o for o in out if isinstance(o, DoorEvent))
    assert (ev.event, ev.reason, ev.by, ev.name, ev.cause_event_id) == (
        "unlocked",
        "granted",
        "p1",
        "Ann",
        "ev1",
    )
    assert s.deadline() == 105.0
    assert s.step(104.99, None) == []
    out = s.step(105.0, None)
    assert relays(out) == [False] and events(out) == ["locked"]
    assert s.deadline() is None


def test_a_second_grant_extends_the_deadline_and_never_re_pulses():
    s = DoorState(rules(unlock_s=5.0), now=0.0, contact_open=False)
    seen = s.step(0.0, Grant("a", "p1", None))
    seen += s.step(3.0, Grant("b", "p2", None))
    seen += s.step(4.0, ExitPressed())
    seen += s.step(4.5, Unlock(1.0, "delivery", "alice"))  # ends before 9: changes nothing
    assert s.until() == 9.0
    seen += s.step(8.9, None)
    assert s.unlocked
    seen += s.step(9.0, None)
    assert relays(seen) == [True, False]
    assert events(seen) == ["unlocked", "locked"]


def test_remote_unlock_lasts_its_duration_and_survives_the_door_closing():
    s = DoorState(rules(unlock_s=5.0), now=0.0, contact_open=False)
    out = s.step(0.0, Unlock(60.0, "delivery", "alice"))
    ev = next(o for o in out if isinstance(o, DoorEvent))
    assert (ev.reason, ev.by, ev.note) == ("remote", "alice", "delivery")
    s.step(1.0, ContactChanged(True))
    out = s.step(2.0, ContactChanged(False))
    assert events(out) == ["closed"] and s.unlocked
    assert s.step(3.0, Unlock(1.0, "oops", "bob")) == []  # never shortens
    assert s.until() == 60.0
    assert relays(s.step(60.0, None)) == [False]


def test_relock_on_close_after_one_passage():
    s = DoorState(rules(unlock_s=5.0), now=0.0, contact_open=False)
    s.step(0.0, Grant("a", "p1", None))
    assert events(s.step(1.0, ContactChanged(True))) == ["opened"]
    out = s.step(2.0, ContactChanged(False))
    assert events(out) == ["closed", "locked"] and relays(out) == [False]
    assert s.deadline() is None


def test_a_door_already_open_at_the_grant_does_not_relock_on_its_close():
    s = DoorState(rules(unlock_s=5.0), now=0.0, contact_open=False)
    s.step(0.0, Grant("a", "p1", None))
    s.step(1.0, ContactChanged(True))  # p1 goes through
    s.step(1.5, Grant("b", "p2", None))  # p2 decided while the door is still open
    assert events(s.step(2.0, ContactChanged(False))) == ["closed"]
    assert s.unlocked  # p2 has not been through yet
    s.step(3.0, ContactChanged(True))
    assert relays(s.step(4.0, ContactChanged(False))) == [False]


def test_forced_open_while_locked_is_an_alarm_that_closing_clears():
    s = DoorState(rules(), now=0.0, contact_open=False)
    out = s.step(10.0, ContactChanged(True))
    assert events(out) == ["opened", "forced_open"] and relays(out) == []
    assert s.alarm == "forced_open"
    assert events(s.step(11.0, ContactChanged(False))) == ["closed"]
    assert s.alarm is None


def test_opening_just_after_the_relock_is_not_forced():
    s = DoorState(rules(unlock_s=5.0), now=0.0, contact_open=False)
    s.step(0.0, Grant("a", "p1", None))
    s.step(5.0, None)  # relocked, the person still pushing
    assert events(s.step(5.0 + RELOCK_GRACE_S / 2, ContactChanged(True))) == ["opened"]
    assert s.alarm is None
    s.step(6.0, ContactChanged(False))
    assert "forced_open" in events(s.step(5.0 + RELOCK_GRACE_S + 0.5, ContactChanged(True)))


def test_held_open_once_per_opening_then_closed():
    s = DoorState(rules(unlock_s=5.0, held_open_s=30.0), now=0.0, contact_open=False)
    s.step(0.0, Grant("a", "p1", None))
    s.step(1.0, ContactChanged(True))
    assert s.deadline() == 5.0
    assert relays(s.step(5.0, None)) == [False]  # relocks with the door open: not forced
    assert s.deadline() == 31.0
    assert s.step(30.9, None) == []
    assert events(s.step(31.0, None)) == ["held_open"]
    assert s.alarm == "held_open"
    assert s.step(100.0, None) == []  # once, not every wake-up
    assert s.deadline() is None
    assert events(s.step(120.0, ContactChanged(False))) == ["closed"]
    assert s.alarm is None
    s.step(130.0, Grant("b", "p1", None))
    s.step(131.0, ContactChanged(True))
    assert events(s.step(135.0, None)) == ["locked"]
    assert events(s.step(161.0, None)) == ["held_open"]  # the next opening may alarm again


def test_forced_and_held_keeps_the_forced_alarm():
    s = DoorState(rules(held_open_s=30.0), now=0.0, contact_open=False)
    s.step(10.0, ContactChanged(True))
    assert events(s.step(40.0, None)) == ["held_open"]
    assert s.alarm == "forced_open"


def test_chattering_contact_gives_one_opened_and_one_closed():
    s = DoorState(rules(unlock_s=5.0, debounce_s=0.05), now=0.0, contact_open=False)
    seen = s.step(0.0, Grant("a", "p1", None))
    t, level = 1.0, False
    for _ in range(15):  # bounces every 10 ms, ending open
        level = not level
        seen += s.step(t, ContactChanged(level))
        t += 0.01
    assert s.deadline() == pytest.approx(t - 0.01 + 0.05)
    seen += s.step(t + 0.1, None)
    for _ in range(15):  # and back, ending closed
        level = not level
        seen += s.step(t + 0.2, ContactChanged(level))
        t += 0.01
    seen += s.step(t + 0.5, None)
    assert [e for e in events(seen) if e in ("opened", "closed")] == ["opened", "closed"]
    assert "forced_open" not in events(seen)


def test_a_bounce_back_to_the_old_level_is_no_change():
    s = DoorState(rules(debounce_s=0.05), now=0.0, contact_open=False)
    s.step(10.0, ContactChanged(True))
    s.step(10.02, ContactChanged(False))
    assert s.step(11.0, None) == [] and s.contact is False


def test_passage_holds_unlocked_until_turned_off():
    s = DoorState(rules(unlock_s=5.0, held_open_s=30.0), now=0.0, contact_open=False)
    out = s.step(0.0, SetPassage(True))
    assert relays(out) == [True]
    assert next(o for o in out if isinstance(o, DoorEvent)).reason == "passage"
    s.step(1.0, Grant("a", "p1", None))
    s.step(2.0, ContactChanged(True))
    s.step(3.0, ContactChanged(False))
    s.step(10.0, ContactChanged(True))
    assert s.step(500.0, None) == []  # no relock, no held-open alarm in passage mode
    assert s.unlocked and s.until() is None
    out = s.step(600.0, SetPassage(False))
    assert relays(out) == [False]
    assert s.deadline() == 630.0  # the held-open timer starts when passage ends


# --- the thread and the pins ------------------------------------------------------------


@pytest.fixture
def door():
    made: list[DoorController] = []

    def make(cfg: DoorConfig = CFG, **kw) -> tuple[DoorController, Recorder]:
        rec = Recorder()
        c = DoorController(cfg, GpioPins(cfg), rec, **kw)
        made.append(c)
        c.start()
        return c, rec

    yield make
    for c in made:
        c.stop()


def test_controller_grant_energises_the_relay_then_relocks(door, mock_pins, caplog):
    relay = pin(mock_pins, RELAY)
    caplog.set_level(logging.INFO, logger="appliance.door.controller")
    c, rec = door(DoorConfig(enabled=True, relay_pin=RELAY, unlock_s=0.5))
    assert c.state() == {
        "relay": "locked",
        "contact": "unknown",
        "alarm": None,
        "passage": False,
        "unlocked_until": None,
    }
    before = time.time()
    c.grant("ev1", "p1", "Ann")
    unlocked = rec.wait_for("unlocked")[0]
    assert unlocked["reason"] == "granted" and unlocked["by"] == "p1"
    assert unlocked["name"] == "Ann" and unlocked["cause_event_id"] == "ev1"
    assert unlocked["type"] == "door" and unlocked["relay"] == "unlocked"
    assert unlocked["at"] >= round(before, 3)
    rec.wait_for("locked")
    assert relay.state is False and c.state()["relay"] == "locked"
    assert [s.state for s in relay.states] == [False, True, False]
    msgs = [r.getMessage() for r in caplog.records if r.name == "appliance.door.controller"]
    assert [m.split(" (")[0] for m in msgs] == ["door relay: unlocked", "door relay: locked"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_controller_extends_instead_of_stacking(door, mock_pins):
    """Fake time, so that no slow machine can let the first deadline pass early."""
    relay = pin(mock_pins, RELAY)
    clock = FakeClock()
    c, rec = door(
        DoorConfig(enabled=True, relay_pin=RELAY, unlock_s=5.0),
        clock=clock,
        wall=lambda: 1000.0 + clock.t,
    )
    c.grant("a", "p1", None)
    rec.wait_for("unlocked")
    assert c.state()["unlocked_until"] == 1005.0
    clock.t = 3.0
    c.grant("b", "p2", None)
    c.unlock(1.0, "test", "alice")
    end = time.monotonic() + WAIT_S
    while c.state()["unlocked_until"] != 1008.0 and time.monotonic() < end:
        time.sleep(0.01)
    assert c.state()["unlocked_until"] == 1008.0  # extended to the later, not 5 + 5
    clock.t = 8.0
    c.set_passage(False)  # a no-op input: wakes the thread now rather than in 5 s
    assert rec.wait_for("locked")[0]["at"] == 1008.0
    assert [s.state for s in relay.states] == [False, True, False]
    assert rec.names() == ["unlocked", "locked"]


def test_exit_button_works_while_the_caller_is_blocked(door, mock_pins):
    """The caller presses and then blocks (a hung camera read): the door thread alone
    unlocks and relocks."""
    relay, button = pin(mock_pins, RELAY), pin(mock_pins, EXIT)
    _, rec = door(DoorConfig(enabled=True, relay_pin=RELAY, exit_pin=EXIT, unlock_s=0.5))
    frame_lock = threading.Lock()
    with frame_lock:  # the frame loop is stuck inside a frame from here on
        button.drive_low()
        button.drive_high()
        with rec.cond:
            rec.cond.wait_for(lambda: rec.of("locked"), WAIT_S)
    assert rec.names() == ["unlocked", "locked"]
    assert rec.of("unlocked")[0]["reason"] == "exit_button"
    assert set(rec.threads) == {"door"}
    assert [s.state for s in relay.states] == [False, True, False]


def test_contact_pin_polarity_and_events(mock_pins):
    contact = pin(mock_pins, CONTACT)
    pins = GpioPins(CFG)
    assert pins.contact_open() is True  # the pull-up with nothing wired: like a cut wire
    contact.drive_low()  # shut: the usual contact to GND is closed
    assert pins.contact_open() is False
    rec = Recorder()
    c = DoorController(CFG, pins, rec)
    c.start()
    try:
        assert c.state()["contact"] == "closed"
        contact.drive_high()
        assert rec.wait_for("opened")[0]["contact"] == "open"
        contact.drive_low()
        assert rec.wait_for("closed")[0]["contact"] == "closed"
        # Within RELOCK_GRACE_S of the start (the pins were just set locked): not forced.
        assert rec.names() == ["opened", "closed"]
    finally:
        c.stop()
    inverted = GpioPins(
        DoorConfig(enabled=True, relay_pin=5, contact_pin=6, contact_open_high=False)
    )
    pin(mock_pins, 6).drive_low()
    assert inverted.contact_open() is True
    inverted.close()


def test_a_restarted_controller_starts_locked_without_a_pulse(mock_pins):
    relay = pin(mock_pins, RELAY)
    rec = Recorder()
    c = DoorController(CFG, GpioPins(CFG), rec)
    c.start()
    c.grant("a", "p1", None)
    rec.wait_for("unlocked")
    c.stop()  # stopped while unlocked: relocks and says so
    assert rec.names() == ["unlocked", "locked"] and relay.state is False
    relay.clear_states()
    c2 = DoorController(CFG, GpioPins(CFG), Recorder())
    c2.start()
    assert c2.state()["relay"] == "locked"
    c2.stop()
    assert [s.state for s in relay.states] == [False]  # never energised on the way


@pytest.mark.parametrize("left_unlocked", [False, True], ids=["left-locked", "left-unlocked"])
@pytest.mark.parametrize(
    ("lock", "active_high", "locked_level"),
    [
        ("fail_secure", True, False),
        ("fail_secure", False, True),
        ("fail_safe", True, True),
        ("fail_safe", False, False),
    ],
)
def test_lock_type_and_relay_polarity(mock_pins, lock, active_high, locked_level, left_unlocked):
    """The pins claim the relay at its locked level, whatever level a previous run (or a
    crash while unlocked) left on the line, and energise it the right way round."""
    relay = pin(mock_pins, RELAY)
    relay.function = "output"
    relay.state = locked_level != left_unlocked
    relay.function = "input"  # released, keeping its level (as the mock does)
    relay.clear_states()
    cfg = DoorConfig(
        enabled=True, relay_pin=RELAY, lock=lock, relay_active_high=active_high, unlock_s=0.5
    )
    rec = Recorder()
    c = DoorController(cfg, GpioPins(cfg), rec)
    c.start()
    assert relay.state is locked_level
    c.grant("a", None, None)
    rec.wait_for("locked")
    c.stop()
    cycle = [locked_level, not locked_level, locked_level]
    assert [s.state for s in relay.states] == ([not locked_level] if left_unlocked else []) + cycle


def test_fail_safe_restart_keeps_the_maglock_energised(mock_pins):
    relay = pin(mock_pins, RELAY)
    cfg = DoorConfig(enabled=True, relay_pin=RELAY, lock="fail_safe")
    GpioPins(cfg).close()
    relay.clear_states()
    pins = GpioPins(cfg)
    assert [s.state for s in relay.states] == [True]
    pins.close()


def test_a_pin_in_use_names_its_config_key(mock_pins):
    import gpiozero

    holder = gpiozero.OutputDevice(RELAY)
    with pytest.raises(DoorError, match=r"^door\.relay_pin: GPIO17 is already in use$"):
        GpioPins(CFG)
    holder.close()
    taken = gpiozero.Button(EXIT)
    with pytest.raises(DoorError, match=r"^door\.exit_pin: GPIO27 is already in use$"):
        GpioPins(CFG)
    # The relay and contact it had claimed before failing were released again.
    gpiozero.OutputDevice(RELAY).close()
    gpiozero.Button(CONTACT).close()
    taken.close()


def test_a_pin_the_board_lacks_names_its_config_key():
    # The parser keeps pins within 0..27; a DoorConfig built in code is not parsed.
    with pytest.raises(DoorError, match=r"^door\.contact_pin: GPIO40 is not a pin of this board$"):
        GpioPins(dataclasses.replace(CFG, contact_pin=40))
    GpioPins(CFG).close()  # the relay it had claimed was let go


def test_remote_unlock_out_of_range_is_refused_and_changes_nothing(door):
    c, rec = door(DoorConfig(enabled=True, relay_pin=RELAY, max_remote_unlock_s=60.0))
    for bad in (0, -1, 61, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ValueError, match=r"door\.max_remote_unlock_s"):
            c.unlock(bad, "test", "alice")  # type: ignore[arg-type]
    c.set_passage(True)
    rec.wait_for("unlocked")
    assert rec.names() == ["unlocked"]  # only the passage, nothing from the refused ones
    assert c.state()["passage"] is True and c.state()["unlocked_until"] is None


def test_a_failing_emit_does_not_stop_the_door(mock_pins):
    relay = pin(mock_pins, RELAY)
    cfg = DoorConfig(enabled=True, relay_pin=RELAY, unlock_s=0.5)
    relocked = threading.Event()

    def emit(payload):
        if payload["event"] == "locked":
            relocked.set()
        raise RuntimeError("outbox is gone")

    c = DoorController(cfg, GpioPins(cfg), emit)
    c.start()
    c.grant("a", None, None)
    assert relocked.wait(WAIT_S)
    c.grant("b", None, None)
    relocked.clear()
    assert relocked.wait(WAIT_S)
    c.stop()
    assert [s.state for s in relay.states] == [False, True, False, True, False]


def test_open_door_is_none_when_disabled(mock_pins):
    assert open_door(DoorConfig(), print) is None
    assert not mock_pins.pins  # no pin was touched


# --- the simulator behind the adapter ---------------------------------------------------


def test_sim_file_drives_the_mock_pins(monkeypatch, tmp_path, mock_pins):
    sim = tmp_path / "door.sim"
    monkeypatch.setenv(SIM_ENV, str(sim))
    rec = Recorder()
    c = open_door(dataclasses.replace(CFG, unlock_s=300.0), rec)
    assert c is not None and sim.exists()
    c.start()
    try:
        with sim.open("a") as f:
            f.write("close\nexit\nop")  # a line is only read once it is whole
        rec.wait_for("unlocked")
        with sim.open("a") as f:
            f.write("en\nbogus\nclose\n")
        rec.wait_for("locked")
    finally:
        c.stop()
    # The mock contact starts open (pull-up); exit -> unlocked; one passage -> relocked.
    assert rec.names() == ["closed", "unlocked", "opened", "closed", "locked"]
    assert rec.of("unlocked")[0]["reason"] == "exit_button"


def test_sim_is_refused_with_a_real_pin_factory(monkeypatch, tmp_path, caplog):
    """A factory that is not gpiozero's MockFactory (as lgpio's is not) never starts the
    simulator, whatever the environment says."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory, MockPin
    from gpiozero.pins.pi import PiFactory

    class OtherFactory(PiFactory):
        def __init__(self) -> None:
            super().__init__()
            self.pin_class = MockPin

        def _get_revision(self) -> int:
            return 0xA02082

        ticks = staticmethod(MockFactory.ticks)
        ticks_diff = staticmethod(MockFactory.ticks_diff)

    sim = tmp_path / "door.sim"
    monkeypatch.setenv(SIM_ENV, str(sim))
    Device.pin_factory = OtherFactory()
    caplog.set_level(logging.WARNING, logger="appliance.door.gpio")
    pins = GpioPins(CFG)
    try:
        assert not sim.exists()
        assert "door-sim" not in {t.name for t in threading.enumerate()}
        assert f"{SIM_ENV} is ignored: the pin factory is OtherFactory" in caplog.text
    finally:
        pins.close()
        Device.pin_factory.close()


# --- configuration ----------------------------------------------------------------------


def test_config_yaml_documents_the_door_defaults():
    cfg = load(ROOT / "config.yaml")
    assert cfg.door == DoorConfig()
    text = (ROOT / "config.yaml").read_text()
    section = text.split("\ndoor:\n", 1)[1]
    for key in DoorConfig.__dataclass_fields__:
        assert f"\n  {key}: " in "\n" + section, key


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("door:\n  relay_pin: 28\n", "line 2: 'door.relay_pin': 28 is outside 0..27"),
        ("door:\n  contact_pin: -1\n", "line 2: 'door.contact_pin': -1 is outside 0..27"),
        ("door:\n  lock: maglock\n", "line 2: 'door.lock': 'maglock' is not one of"),
        ("door:\n\n  unlock_s: 0\n", "line 3: 'door.unlock_s': 0.0 is outside 0.5..300.0"),
        ("door:\n  relay: 5\n", "line 2: 'door.relay': unknown key"),
        ("door:\n  exit_pin: 17\n", "'door.exit_pin': GPIO17 is already 'door.relay_pin'"),
        (
            "door:\n  contact_pin: 4\n  exit_pin: 4\n",
            "'door.exit_pin': GPIO4 is already 'door.contact_pin'",
        ),
    ],
)
def test_bad_door_config_names_the_key(yaml_text, message):
    with pytest.raises(ConfigError) as exc:
        parse(yaml_text)
    assert message in str(exc.value)


def test_door_config_parses():
    cfg = parse("door:\n  enabled: true\n  lock: fail_safe\n  contact_pin: null\n  exit_pin: 4\n")
    assert (cfg.door.enabled, cfg.door.lock, cfg.door.contact_pin, cfg.door.exit_pin) == (
        True,
        "fail_safe",
        None,
        4,
    )
