"""The door: relay, contact and exit button (gpio.py) and the rules that drive them
(controller.py). A door is optional: attendance mode runs without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from appliance.config.schema import DoorConfig
from appliance.door.controller import DoorController
from appliance.door.gpio import DoorError, GpioPins

__all__ = ["DoorController", "DoorError", "GpioPins", "open_door"]


def open_door(cfg: DoorConfig, emit: Callable[[dict[str, Any]], None]) -> DoorController | None:
    """The door's controller on its pins (not started), or None when `door.enabled` is
    false. Claims the pins, so the relay is at its locked level from here on; a pin that
    cannot be used raises DoorError naming its config key."""
    if not cfg.enabled:
        return None
    return DoorController(cfg, GpioPins(cfg), emit)
