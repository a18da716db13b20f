"""Tell systemd how the daemon is doing: the sd_notify(3) protocol, stdlib only.

The unit is `Type=notify` with `WatchdogSec=`, so systemd waits for READY=1 before it
counts the service as started, shows our STATUS= line in `systemctl status`, and kills
and restarts us if WATCHDOG=1 pings stop. The protocol is a newline-separated list of
VAR=value assignments sent as one datagram to the AF_UNIX socket named by
$NOTIFY_SOCKET; libsystemd is not needed for that, and a C dependency on the Pi is not
worth it.

Outside systemd (a terminal, the tests, `make run`) there is no $NOTIFY_SOCKET, and every
call is a cheap no-op that returns False, so callers never need to check first.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to the service manager, if there is one.

    Sending never raises: the daemon's job is recognising faces, and a lost status
    message must not stop it. Failures are logged at debug level only, because without
    systemd they are expected and would otherwise fill the log every watchdog period.
    """

    def __init__(self, socket_path: str | None = None) -> None:
        """Use `socket_path`, or $NOTIFY_SOCKET when None.

        A leading '@' names a Linux abstract socket (systemd uses one in some containers
        and test setups); it becomes a leading NUL byte, as the kernel expects.
        """
        if socket_path is None:
            socket_path = os.environ.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if socket_path.startswith("@"):
            self._address = b"\0" + socket_path[1:].encode()
        elif socket_path.startswith("/"):
            self._address = socket_path
        elif socket_path:
            # systemd only ever sets absolute or abstract addresses; anything else is a
            # misconfiguration, and sending to a relative path would depend on the cwd.
            log.debug("ignoring NOTIFY_SOCKET=%r: not absolute or abstract", socket_path)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify (i.e. we run under systemd)."""
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send `fields` (e.g. "READY=1", "STATUS=...") as one datagram.

        One datagram, because systemd applies the assignments of a message together
        (READY=1 with its STATUS= shows up at once). Returns True if it was sent.
        """
        if self._address is None or not fields:
            return False
        message = "\n".join(fields).encode()
        try:
            # A fresh socket per message: no descriptor is held open across fork/exec of
            # helpers, and a datagram socket costs microseconds to make.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", fields, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Startup finished: models loaded, camera open. Type=notify waits for this."""
        if status:
            return self.notify("READY=1", _status_field(status))
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        """One line shown by `systemctl status appliance` (e.g. "3 people, camera ok")."""
        return self.notify(_status_field(text))

    def stopping(self) -> bool:
        """Shutdown has begun, so systemd does not mistake a slow exit for a hang."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A reload (SIGHUP) has begun; send ready() again when it has finished.

        MONOTONIC_USEC is what systemd >= 253 needs to match this message with the reload
        it requested under Type=notify-reload; older systemd ignores the extra field.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog(self) -> bool:
        """Keep-alive ping; without one every WatchdogSec= systemd restarts us."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None if no watchdog is expecting them.

        Half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises, so that one late
        ping is not fatal. If $WATCHDOG_PID is set to another process, the watchdog is
        that process's (we are a child that inherited the environment): None.
        """
        pid = os.environ.get("WATCHDOG_PID")
        if pid:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                log.debug("ignoring watchdog: bad WATCHDOG_PID=%r", pid)
                return None
        try:
            usec = int(os.environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2_000_000


def _status_field(text: str) -> str:
    """STATUS=text on one line: a newline would start a new (bogus) assignment."""
    return "STATUS=" + " ".join(text.splitlines())
