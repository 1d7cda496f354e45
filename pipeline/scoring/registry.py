"""The scorers: named spoof scorers, each a checkpoint with its card, loaded and run together.

Names are a contract (keys of ``scores``, prefixes of per-scorer columns): the shipped
EfficientNet-B2 is ``b2`` (``models/default``), the Silent-Face ensemble is ``reference``
(``models/reference``). A third scorer is a directory with a card, either a B2-style
checkpoint (``"kind": "timm"``, the default), ONNX files (``"kind": "onnx"``, see
:mod:`pipeline.scoring.onnx_model`) or a fusion of other scorers (``"kind": "fusion"``, see
:mod:`pipeline.scoring.fusion`); it joins by name with no code change.

Which scorers may decide: by default only those whose card records a measurement on
real faces (``real_evaluation``). A synthetic-only scorer is still computed and shown, but
cannot make a face ``spoof`` or ``review`` on its own.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.checkpoint import DEFAULT_ONNX_CACHE, checkpoint_paths, weights_digest
from pipeline.errors import ModelError
from pipeline.faces.crop import CropSpec
from pipeline.scoring.fusion import FusionCard, fuse, read_fusion_card
from pipeline.scoring.model import DEFAULT_MODEL_DIR, ModelCard, read_card
from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR, OnnxEnsembleScorer, OnnxModelCard, read_onnx_card
from pipeline.scoring.scorers import Backend, Scorer, build_scorer

ScorerCard = ModelCard | OnnxModelCard | FusionCard
SHIPPED_SCORERS: dict[str, Path] = {"b2": DEFAULT_MODEL_DIR, "reference": DEFAULT_REFERENCE_DIR}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
OperatingPoint = Literal["image", "session", "calibration"]  # which threshold decides a scorer's sessions


def read_scorer_card(path: str | Path) -> ScorerCard:
    """The validated card of the scorer checkpoint at ``path``, whatever its kind."""
    _, card_path = checkpoint_paths(path)
    try:
        kind = json.loads(card_path.read_text()).get("kind", "timm")
    except FileNotFoundError:
        raise ModelError(f"no model card at {card_path}") from None
    except (ValueError, OSError, AttributeError) as exc:
        raise ModelError(f"unreadable model card {card_path}: {exc}") from exc
    if kind == "onnx":
        return read_onnx_card(card_path.parent)
    if kind == "fusion":
        return read_fusion_card(card_path.parent)
    if kind == "timm":
        return read_card(path)
    raise ModelError(f"model card {card_path}: unknown kind {kind!r}; allowed: timm, onnx, fusion")


@dataclass(frozen=True)
class ScorerEntry:
    """One named scorer: where its checkpoint is and what its card says."""

    name: str
    path: Path
    card: ScorerCard
    session_threshold: float | None = None  # a session threshold in place of the card's photo threshold
    review_band: float | None = None  # the session operating point's band; None: aggregate.review_band
    operating_point: OperatingPoint = "image"

    @property
    def measured_on_real_data(self) -> bool:
        return self.card.real_evaluation is not None

    @property
    def threshold(self) -> float:
        return self.card.threshold if self.session_threshold is None else self.session_threshold

    def band(self, default: float) -> float:
        """The half-width of its review band: its own operating point's, else ``default``."""
        return default if self.review_band is None else self.review_band

    def for_sessions(self, calibrated: float | None = None) -> ScorerEntry:
        """This scorer as a scan decides sessions with it: at a ``calibrated`` threshold (from an
        archive's verdicts, ``decision.thresholds``) with the configured band, else at its card's
        session operating point, else (never measured on sessions) at its photo threshold."""
        if calibrated is not None:
            return replace(self, session_threshold=calibrated, review_band=None, operating_point="calibration")
        point = self.card.session
        if point is None:
            return self
        return replace(
            self, session_threshold=point.threshold, review_band=point.review_band, operating_point="session"
        )

    def describe_point(self, default_band: float) -> str:
        """Which operating point decides, in words, e.g. ``session 0.565 +- 0.401``."""
        return f"{self.operating_point} {self.threshold:.3f} +- {self.band(default_band):.3f}"


def resolve_scorers(models: Mapping[str, str | Path | None]) -> list[ScorerEntry]:
    """The scorers named in ``models`` (name -> checkpoint; None = the shipped one of that
    name), every card read and checked before any work: a missing or corrupt model is a
    :class:`ModelError` naming the file."""
    entries = []
    for name, path in models.items():
        if not NAME_PATTERN.match(name):
            raise ModelError(f"scorer name {name!r} must be lower-case letters, digits and _ (at most 32)")
        if path is None:
            if name not in SHIPPED_SCORERS:
                raise ModelError(
                    f"scorer {name!r} needs a model directory; shipped scorers: {', '.join(SHIPPED_SCORERS)}"
                )
            path = SHIPPED_SCORERS[name]
        card = read_scorer_card(path)
        if not card.trained:
            raise ModelError(f"the {name} model at {path} is untrained: it never scores")
        entries.append(ScorerEntry(name, Path(path), card))
    check_fusions(entries)
    return entries


def check_fusions(entries: Sequence[ScorerEntry]) -> None:
    """Every fusion's members are among ``entries``, with the very weights it was fitted on;
    else a :class:`ModelError` naming the member."""
    by_name = {e.name: e for e in entries}
    for fusion in entries:
        if not isinstance(fusion.card, FusionCard):
            continue
        for name, member in fusion.card.members.items():
            entry = by_name.get(name)
            if entry is None or isinstance(entry.card, FusionCard):
                raise ModelError(
                    f"fusion scorer {fusion.name!r} ({fusion.path}) combines {name!r}, which is not a model scorer of"
                    f" this run (scorers: {', '.join(by_name)})"
                )
            if scorer_digest(entry) != member.digest:
                raise ModelError(
                    f"fusion scorer {fusion.name!r} ({fusion.path}) was fitted on {name} weights {member.digest}"
                    f" ({member.version or 'unknown version'}); this run's {name} ({entry.path}) has"
                    f" {scorer_digest(entry)}: fit the fusion again (`liveness promote`)"
                )


def members(entries: Sequence[ScorerEntry], names: Sequence[str]) -> set[str]:
    """``names`` and the members of any fusion among them: the scorers they need run."""
    by_name = {e.name: e for e in entries}
    needed = set(names)
    for name in names:
        card = by_name[name].card
        if isinstance(card, FusionCard):
            needed |= set(card.members)
    return needed


def scorer_digest(entry: ScorerEntry) -> str:
    """Short content hash of a scorer's weights (its safetensors, its ONNX files, a fusion's card)."""
    if isinstance(entry.card, FusionCard):
        return hashlib.sha256(entry.card.model_dump_json().encode()).hexdigest()[:16]
    if isinstance(entry.card, OnnxModelCard):
        h = hashlib.sha256()
        for member in entry.card.members:
            h.update((entry.path / member.file).read_bytes())
        return h.hexdigest()[:16]
    return weights_digest(entry.path)


def crop_specs(entries: Sequence[ScorerEntry]) -> tuple[CropSpec, ...]:
    """Every distinct crop the scorers need, in the order they first need it."""
    return tuple(dict.fromkeys(spec for e in entries for spec in e.card.crop_specs))


class Scorers:
    """The scorers of one process, loaded once: crops in, a spoof probability per scorer out."""

    def __init__(
        self,
        entries: Sequence[ScorerEntry],
        *,
        backend: Backend = "auto",
        threads: int = 0,
        cache_dir: str | Path = DEFAULT_ONNX_CACHE,
        gpu: bool | None = None,
    ) -> None:
        self.entries = list(entries)
        own = {e.name: {spec.key for spec in e.card.crop_specs} for e in self.entries}
        self._needs = {e.name: set().union(*(own[m] for m in members(self.entries, [e.name]))) for e in self.entries}
        self._run: dict[str, OnnxEnsembleScorer | _SingleCrop] = {}
        self._fusions = {e.name: e.card for e in self.entries if isinstance(e.card, FusionCard)}
        for e in self.entries:
            if isinstance(e.card, FusionCard):
                continue
            if isinstance(e.card, OnnxModelCard):
                self._run[e.name] = OnnxEnsembleScorer(e.path, threads=threads)
            else:
                self._run[e.name] = _SingleCrop(
                    build_scorer(e.path, backend=backend, threads=threads, cache_dir=cache_dir, gpu=gpu),
                    e.card.crop_spec,
                )

    def backends(self) -> dict[str, str]:
        return {name: run.name for name, run in self._run.items()} | {name: "fusion" for name in self._fusions}

    def __call__(self, crops: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``{scorer name: spoof probabilities (N,)}`` for faces given as ``{crop key: (N, S, S, 3)}``,
        by every scorer whose crops are given (a refinement round brings the deciders' only);
        a fusion from its members' probabilities."""
        out = {name: run(crops) for name, run in self._run.items() if self._needs[name] <= crops.keys()}
        for name, card in self._fusions.items():
            if set(card.members) <= out.keys():
                out[name] = fuse(card, {m: out[m] for m in card.members})
        return out


class _SingleCrop:
    """A one-crop scorer (the B2 backends) fed from the crops of every spec."""

    def __init__(self, scorer: Scorer, spec: CropSpec) -> None:
        self._scorer, self._key, self.name = scorer, spec.key, scorer.name

    def __call__(self, crops: Mapping[str, np.ndarray]) -> np.ndarray:
        return self._scorer(crops[self._key])


class ScoringActor:
    """A Ray actor that loads every scorer once and scores the batches of crops the scan sends."""

    def __init__(
        self, scorers: list[tuple[str, str]], backend: Backend, threads: int, cache_dir: str, gpu: bool
    ) -> None:
        entries = resolve_scorers(dict(scorers))
        self._scorers = Scorers(entries, backend=backend, threads=threads, cache_dir=cache_dir, gpu=gpu)

    def backend(self) -> str:
        return ", ".join(f"{name}: {backend}" for name, backend in self._scorers.backends().items())

    def score(self, crops: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._scorers(crops)


def scan_scorers(model: str | Path | None, more: Mapping[str, str | Path | None]) -> list[ScorerEntry]:
    """The scan's scorers: ``b2`` (the ``model`` checkpoint) first, then ``more`` by name."""
    if "b2" in more:
        raise ModelError("the b2 scorer is the `model` checkpoint (--model); it cannot be named under scorers")
    return resolve_scorers({"b2": model, **more})
