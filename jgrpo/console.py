"""Where this process's output goes while a chatty library works."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def output_to(log_file: Path | None):
    """Sends everything this process prints meanwhile (Python's and C++'s alike, from any thread)
    to log_file; None changes nothing. For libraries that print pages: vLLM starting, reloading and
    generating; Orbax's background writers failing on a full disk."""
    if log_file is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
