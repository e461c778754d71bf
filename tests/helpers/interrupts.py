"""Ctrl-C as a terminal sends it, for the tests of interrupts landing inside orbax."""

import signal
import threading


def ctrl_c() -> None:
    """What a Ctrl-C does: SIGINT to the main thread (from any thread)."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
