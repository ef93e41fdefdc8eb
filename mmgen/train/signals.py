"""Stop training cleanly on SIGINT (Ctrl-C) or SIGTERM (what a cluster scheduler sends before preemption).

The first signal only sets a flag: the trainer finishes the step it is in, writes an atomic
checkpoint and stops with one line saying how to resume. A second Ctrl-C aborts at once (every
file on disk is still whole: writes are atomic).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """Set by a signal handler, read by the training loop after every step."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal_number).name if self.signal_number else ""

    def request(self, signal_number: int) -> None:
        self.signal_number = signal_number


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to ``stop`` for the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signal_number, frame):
        if stop.requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now, without the checkpoint
        stop.request(signal_number)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
