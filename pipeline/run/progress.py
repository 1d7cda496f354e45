"""Progress of long work: a rich bar on a terminal, a log line every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger("pipeline.progress")


class Progress:
    """Counts ``total`` items of one phase (``what``: "scanning", "rendering sessions", ...).

    On a terminal (and ``enabled``) a transient bar; elsewhere an INFO line at most every 10 s
    and at the end, so a log file shows the work moving without a wall of lines.
    """

    def __init__(self, what: str, total: int, enabled: bool = True) -> None:
        self.what, self.total, self.done, self._last = what, total, 0, time.monotonic()
        self._bar: Any = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(what, total=total)

    def advance(self, n: int = 1) -> None:
        """``n`` more items done."""
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif time.monotonic() - self._last > 10 or self.done == self.total:
            self._last = time.monotonic()
            log.info("%s: %d/%d", self.what, self.done, self.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
