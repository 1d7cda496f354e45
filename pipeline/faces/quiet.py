"""MediaPipe's start-up chatter kept off the operator's screen.

MediaPipe's C++ core (absl logging, TensorFlow Lite) writes lines such as "Created
TensorFlow Lite XNNPACK delegate for CPU" and "Feedback manager requires a model with a
single signature inference" straight to file descriptor 2 while its graphs start and run
their first image, in every process that loads them (each Ray worker too). They say nothing
an operator can act on, and no Python logging setting reaches them. So the graphs are built
and warmed up with descriptor 2 pointed at ``/dev/null``; after that window, stderr is
restored, and anything MediaPipe reports later (a real failure) is shown.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_muted() -> Iterator[None]:
    """Descriptor 2 points at ``/dev/null`` inside the block (left as it is where it cannot be duplicated)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
