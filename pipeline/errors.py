"""Every error the product raises on purpose, under one base class.

The CLI turns any :class:`LivenessError` that reaches it into exit status 2 with its
message; anything else is a crash (exit 1). Each message names the bad value and, where
there is one, the allowed range.
"""

from __future__ import annotations


class LivenessError(Exception):
    """Base of the errors a user can act on: bad usage, config, input or model."""


class UsageError(LivenessError):
    """Bad usage found before any work started."""


class ConfigError(LivenessError):
    """A configuration file or override that cannot be used."""


class InputError(LivenessError):
    """An input argument that names nothing usable."""


class ModelError(LivenessError):
    """A checkpoint that cannot be used: missing, unreadable or inconsistent."""


class LedgerBusy(LivenessError):
    """Another run holds the output directory."""


class QueryError(LivenessError):
    """A query DuckDB refused; the message is DuckDB's."""


class ReportError(LivenessError):
    """Nothing to report: no scan output, or no session on the date asked."""


class DecodeError(LivenessError):
    """A video that cannot be opened or decoded; the message is the reason shown on its row.

    Raised per session and caught by the scan, which makes it a ``failed`` row."""


class ScanInterrupted(BaseException):
    """SIGINT or SIGTERM reached a scan: it stops submitting, commits what is finished and
    exits ``128 + signum``. A BaseException, like KeyboardInterrupt, so that no handler of
    ordinary errors swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class OutputFull(LivenessError):
    """The output's disk (or quota) is full: what was committed before stays, the rest is
    scanned by the next run once there is space."""
