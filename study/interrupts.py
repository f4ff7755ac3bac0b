"""Ctrl-C and SIGTERM while a study runs: both stop the run as an interrupt, and the cleanup that
follows (failing the running trials and queuing them again) is not cut short by a second one.

People press Ctrl-C twice. Without a shield, the second press lands in the cleanup and leaves a
trial failed but not queued again, so its params are never retried. While a ``CleanupShield`` is
engaged, a second Ctrl-C or SIGTERM only says that the cleanup is finishing; a third stops at once,
as asked (the next run recovers trials left RUNNING; one already failed but not yet queued again
stays failed, its finished siblings untouched).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so Optuna ends the running trial like on Ctrl-C."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While optimizing, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread."""
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class CleanupShield:
    """Lets the cleanup after an interrupt run to its end through one more Ctrl-C or SIGTERM, which
    only prints that the cleanup is finishing; a further one raises ``KeyboardInterrupt`` at once.

    ``engage()`` where the first interrupt is caught (so that Optuna's own handling of it is covered
    too: a second interrupt inside Optuna's ``tell`` raises an ``UnboundLocalError`` from Optuna's
    code and leaves the trial running), ``release()`` when the cleanup is done; or use it as a
    context manager around the cleanup. Outside the main thread it does nothing."""

    def __init__(self, *, what: str) -> None:
        self.what = what
        self._previous: dict[int, Any] | None = None
        self._received = 0

    @property
    def engaged(self) -> bool:
        """Whether the shield's handlers are installed now."""
        return self._previous is not None

    def engage(self) -> None:
        """Install the handlers (again: a no-op)."""
        if self.engaged or not _in_main_thread():
            return
        self._received = 0
        self._previous = {signum: signal.signal(signum, self._handler) for signum in SIGNALS}

    def release(self) -> None:
        """Put back the handlers found by ``engage`` (when not engaged: a no-op)."""
        if self._previous is None:
            return
        for signum, old in self._previous.items():
            signal.signal(signum, old)
        self._previous = None

    def _handler(self, signum: int, frame: Any) -> None:
        self._received += 1
        if self._received > 1:
            raise KeyboardInterrupt()
        print(f"hpstudy: {self.what}; a moment (press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> CleanupShield:
        self.engage()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
