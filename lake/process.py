"""How our entry points end: Python's own shutdown, then os._exit.

delta-rs and pyarrow can race in their C++ destructors at interpreter exit and abort a process
that finished its work ("terminate called without an active exception", exit -6;
delta-io/delta-rs#2184): a CLI command or a Ray job would then report a failure after
succeeding. `run_then_exit` runs the Python-level shutdown by hand (non-daemon threads joined,
atexit handlers, streams flushed) and leaves with os._exit, which those destructors never see.
An uncaught exception still exits the normal way, with its traceback.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run_then_exit(main: Callable[[], object]) -> NoReturn:
    """Call `main` (a SystemExit sets the exit code), then end the process as described above."""
    try:
        main()
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
