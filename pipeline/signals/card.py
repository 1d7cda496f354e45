"""Which session signals may decide: their card, with what each was measured on and how well.

A score may drive a decision only where it was measured on real data, and the signals obey
the same rule: each rule that can change a decision (``swap``, ``occluded:<region>``,
``no_blink``, ``static``, ``multi_face``, ``too_short``, ``partial_decode``,
``linked:<kind>``) has an entry in the signal card (``models/signals/card.json``, made by
``uv run python -m training.cards.signal_cards``): on how many real sessions of live people it was
measured, on how many of them it fired falsely, and, where real cases exist, how many it
found. A rule with no real measurement, or one that fired falsely on more than
``decision.max_false_fire_rate`` of the real live sessions, still fires and is named in
``reasons``, but its action becomes ``inform``: it cannot move the decision.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pipeline.checkpoint import MODELS_DIR
from pipeline.errors import ModelError

DEFAULT_SIGNAL_CARD = MODELS_DIR / "signals" / "card.json"


@dataclass(frozen=True)
class SignalMeasurement:
    """One rule on real footage: sessions of live people it was run on and fired falsely on,
    and real cases of what it detects and how many it found (0 cases: none exist here)."""

    live_sessions: int
    false_fires: int
    real_cases: int = 0
    hits: int = 0
    measured_on: str = ""
    fired_on: tuple[str, ...] = ()  # the live sessions it fired on falsely

    @property
    def false_fire_rate(self) -> float | None:
        return self.false_fires / self.live_sessions if self.live_sessions else None


@dataclass(frozen=True)
class SignalCard:
    """Every rule's real-footage measurement; :meth:`decides` says which may move a decision."""

    version: str
    measured_on: str
    signals: dict[str, SignalMeasurement] = field(default_factory=dict)

    def decides(self, reason: str, max_false_fire_rate: float = 1.0) -> bool:
        """Whether the rule behind ``reason`` may move a decision: it was measured on real
        footage of live people and fired falsely on at most ``max_false_fire_rate`` of them."""
        measured = self.signals.get(reason)
        rate = None if measured is None else measured.false_fire_rate
        return rate is not None and rate <= max_false_fire_rate + 1e-12

    def decider(self, max_false_fire_rate: float) -> Callable[[str], bool]:
        """:meth:`decides` at ``max_false_fire_rate`` (``decision.max_false_fire_rate``)."""
        return partial(self.decides, max_false_fire_rate=max_false_fire_rate)

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "measured_on": self.measured_on,
            "signals": {
                name: {**m.__dict__, "fired_on": list(m.fired_on), "false_fire_rate": m.false_fire_rate}
                for name, m in sorted(self.signals.items())
            },
        }


def read_signal_card(path: str | Path | None = None) -> SignalCard:
    """The signal card at ``path`` (default: the shipped one); a missing or corrupt card is a
    :class:`ModelError` naming the file."""
    path = Path(path) if path is not None else DEFAULT_SIGNAL_CARD
    try:
        data = json.loads(path.read_text())
        signals = {
            name: SignalMeasurement(
                live_sessions=int(m["live_sessions"]),
                false_fires=int(m["false_fires"]),
                real_cases=int(m.get("real_cases", 0)),
                hits=int(m.get("hits", 0)),
                measured_on=str(m.get("measured_on", "")),
                fired_on=tuple(m.get("fired_on", ())),
            )  # fmt: skip
            for name, m in data["signals"].items()
        }
        return SignalCard(str(data["version"]), str(data["measured_on"]), signals)
    except FileNotFoundError:
        raise ModelError(f"no signal card at {path}") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"unreadable signal card {path}: {exc}") from exc
