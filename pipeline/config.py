"""Scan configuration: YAML defaults in ``configs/scan.yaml``, validated, overridable from the CLI.

Unknown keys and bad values fail loudly at start-up (exit 2 from the CLI), before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

_M = TypeVar("_M", bound=BaseModel)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_SCAN_CONFIG = CONFIG_DIR / "scan.yaml"
DEFAULT_MIN_FRACTION = 0.3  # occlusion session rule: share of frames with landmarks at or above a region's threshold


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BlinkConfig(_Strict):
    """Thresholds of blink counting (:mod:`pipeline.signals.blinks`); ratios are of the eye's open-eye baseline EAR."""

    closed_ratio: float = Field(
        0.75, gt=0, lt=1, description="eyes shut when their mean EAR falls under this share of the open baseline"
    )
    open_ratio: float = Field(
        0.85,
        gt=0,
        le=1,
        description="and open again from this share on (hysteresis: noise near one threshold is not a blink)",
    )
    baseline_s: float = Field(0.75, gt=0, description="the open baseline looks this far before and after each frame")
    baseline_quantile: float = Field(
        0.7, ge=0.5, le=1, description="a high quantile, so that shut frames do not pull the baseline down"
    )
    min_open_ear: float = Field(
        0.1, ge=0, description="an eye whose baseline is lower cannot be read (covered, turned away): ignored"
    )
    noise_depth: float = Field(
        1.5,
        ge=0,
        description="and this many robust SDs of the session's openness under 1 (noisy eyes need deeper closures)",
    )
    min_closed_frames: int = Field(
        1, ge=1, description="shut samples a blink needs (1: at 12 fps a short blink is one sample)"
    )
    max_blink_s: float = Field(
        0.5, gt=0, description="a closure longer than this (missing frames included) is not a blink"
    )
    min_session_s: float = Field(
        10.0, gt=0, description="eyes watched this long without a blink make the no_blink reason"
    )
    min_eye_px: float = Field(
        30.0, ge=0, description="eyes narrower than this (corner to corner, frame pixels) are not watched for blinks"
    )
    min_eye_balance: float = Field(
        0.6, ge=0, le=1, description="nor are they when the narrower eye is under this share of the wider (head turned)"
    )
    max_gap_s: float = Field(
        0.15, gt=0, description="watched time runs only between readings this close (a blink lasts 0.1-0.4 s)"
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> BlinkConfig:
        if not self.closed_ratio < self.open_ratio:
            raise ValueError(f"need closed_ratio < open_ratio, got {self.closed_ratio} and {self.open_ratio}")
        return self


class SwapConfig(_Strict):
    """Thresholds of identity-swap detection (:mod:`pipeline.signals.swap`)."""

    cut_similarity: float = Field(
        0.9, gt=0, lt=1, description="consecutive crops less alike than this are an abrupt change (a candidate cut)"
    )
    window_s: float = Field(
        1.0, gt=0, description="face shapes are compared over this long before and after a candidate"
    )
    min_window_frames: int = Field(4, ge=2, description="frames with landmarks needed on each side of a candidate")
    min_shape_change: float = Field(
        0.03, gt=0, description="Procrustes distance of the mean shapes before and after (share of face radius)"
    )
    min_shape_ratio: float = Field(
        2.5, gt=0, description="and this many times the frames' own scatter around their window's mean"
    )
    min_shape_scatter: float = Field(
        0.005, gt=0, description="scatter floor, so a landmark-perfect (frozen) window does not inflate the ratio"
    )
    identity_distance: float | None = Field(
        None, gt=0, lt=2, description="embedding distance across a cut that makes a swap; null = the identity card's"
    )
    shape_support_distance: float | None = Field(
        None,
        gt=0,
        lt=2,
        description="from this identity distance on, a face-shape swap counts too; null = the card's same-person p90",
    )
    crowded_share: float | None = Field(
        0.5,
        gt=0,
        le=1,
        description="a change of main face with several faces in view in this share of the frames on both sides is"
        " not a swap (people present together); null = always a swap",
    )


class IdentityConfig(_Strict):
    """The face-recognition embedding (:mod:`pipeline.faces.identity`): biometric data."""

    enabled: bool = Field(
        True, description="embed the main face: swaps by identity, templates, same_face links (false: none of them)"
    )
    store: bool = Field(True, description="write each session's template to OUT/identities/ (needed for same_face)")
    model: str | None = Field(None, description="the identity card's folder; null = the shipped models/identity")
    rate_hz: float = Field(2.0, gt=0, le=30, description="embeddings per second, plus both frames of a strong cut")
    cut_similarity: float = Field(
        0.7, gt=0, lt=1, description="consecutive crops less alike than this are a strong cut: both frames embedded"
    )
    min_eye_px: float = Field(20.0, gt=0, description="faces whose eye corners lie closer (pixels) are not embedded")
    max_turn: float = Field(
        0.6, gt=0, le=2, description="faces turned further (nose off the eyes' middle, share of eye distance) neither"
    )


class StaticConfig(_Strict):
    """Thresholds of static-stream detection (:mod:`pipeline.signals.swap`)."""

    min_similarity: float = Field(
        0.995, gt=0, le=1, description="consecutive crops at least this alike count as unchanged"
    )
    min_static_s: float = Field(2.0, gt=0, description="unchanged for this long makes the stream static")


class InputConfig(_Strict):
    extensions: list[str] = Field(
        default_factory=lambda: ["mp4", "mov", "mkv", "webm", "avi", "m4v", "3gp"], min_length=1
    )
    identity: Literal["stat", "content"] = Field(
        "stat", description="what tells a changed input: size + mtime, or a content hash"
    )
    retry_failed: int = Field(
        2, ge=0, le=100, description="later runs try a failed session again this many times (0 = never)"
    )
    applicant_column: str | None = Field(
        None,
        min_length=1,
        description="manifest column naming the applicant: one face under two applicants is linked:same_face,"
        " the same applicant applying again is linked:reapplied (information)",
    )

    @field_validator("extensions")
    @classmethod
    def _normalise(cls, value: list[str]) -> list[str]:
        return [e.lower().lstrip(".") for e in value]


class DecodeConfig(_Strict):
    """How frames come out of a video (``timeout_s`` aside, changing these rescans everything)."""

    sample_fps: float = Field(12.0, gt=0, le=120, description="blinks last 100-400 ms: about 10-15 fps catches them")
    max_frames: int = Field(240, ge=1)
    max_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="a larger frame, in the header or mid-stream, fails the session (absurd resolution)",
    )
    timeout_s: float = Field(300.0, gt=0, description="per-session wall time before it is marked failed")
    max_decoded_pixels: float | None = Field(
        1e10,
        gt=0,
        description="pixels a session may decode (every frame, sampled or not) before it is marked failed, beside"
        " timeout_s: a small file of huge, cheap frames cannot hold a worker; null = no budget",
    )


class DetectConfig(_Strict):
    model_selection: Literal[0, 1] = 1
    min_confidence: float = Field(0.5, gt=0, lt=1)
    main_face: Literal["largest", "confident"] = "largest"
    pad_retry: float = Field(
        0.5,
        ge=0,
        le=2,
        description="a frame with no face is searched again inside a grey border this share of its longer side wide"
        " (a face filling the frame is missed otherwise); 0 = no retry",
    )
    follow_face: bool = Field(
        True, description="keep the main face that overlaps the previous frame's, so it does not jump between people"
    )
    min_face_share: float = Field(
        0.4,
        ge=0,
        le=1,
        description="faces narrower than this share of the main face (a person far behind) are not counted in n_faces",
    )
    recheck_hz: float | None = Field(
        2.0,
        gt=0,
        le=120,
        description="detections per second while the face mesh tracks the face (and whenever it is lost);"
        " null = on every sampled frame",
    )
    max_others: int = Field(
        2,
        ge=0,
        le=8,
        description="faces beside the main one scored per frame, largest first (a photo or a phone held up beside"
        " the applicant); 0 = the main face only",
    )
    other_min_px: float = Field(
        24.0, ge=1, description="other faces narrower than this (pixels) are not scored: too small to judge"
    )


GPU_BATCH, CPU_BATCH = 32, 8  # scoring.batch_size when null


class ScoringConfig(_Strict):
    backend: Literal["auto", "onnx", "torch"] = "auto"
    batch_size: int | None = Field(
        None,
        ge=1,
        description="crops per batch, formed across sessions; null = 32 on a GPU, 8 on CPU (as fast per crop"
        " there, and the networks' working memory a quarter)",
    )

    def batch_for(self, gpu: bool) -> int:
        """The batch size on this hardware (:attr:`batch_size`, or its default for it)."""
        return self.batch_size or (GPU_BATCH if gpu else CPU_BATCH)

    actors: int = Field(1, ge=1)
    num_gpus: float = Field(1.0, gt=0, le=8, description="GPUs per actor when the cluster has GPUs")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per actor; 0 = it shares the cores with the analyses")
    threads: int = Field(0, ge=0, description="intra-op threads per actor, 0 = the actor's CPUs")
    onnx_cache: str = "~/.cache/liveness/onnx"
    rate_hz: float | None = Field(
        3.0, gt=0, le=120, description="faces scored per second, plus dense_s after an event; null = every frame"
    )
    dense_s: float = Field(
        0.5, ge=0, le=10, description="after a cut or a face change, lost or found, every face is scored this long"
    )
    other_rate_hz: float | None = Field(
        4.0,
        gt=0,
        le=120,
        description="frames per second whose other faces (detect.max_others) are scored, among those where detection"
        " runs; null = every such frame",
    )
    refine_band: float | None = Field(
        0.05,
        ge=0,
        lt=1,
        description="a session whose deciding score lies this close to a decision edge (threshold +- review_band)"
        " has every face scored by the deciding scorers (decision.scorers); null = never",
    )


class OcclusionSignalConfig(_Strict):
    enabled: bool = True
    model: str | None = Field(None, description="occlusion checkpoint directory; null = the shipped models/occlusion")
    min_fraction: float = Field(
        DEFAULT_MIN_FRACTION,
        gt=0,
        le=1,
        description="share of frames with landmarks over a region's threshold that makes it occluded",
    )
    rate_hz: float | None = Field(
        6.0, gt=0, le=120, description="occlusion checks per second, plus while eyes close; null = every frame"
    )


class SignalsConfig(_Strict):
    """The session signals beyond the spoof score: landmarks, blinks, swap, static stream, occlusion."""

    enabled: bool = True
    blinks: BlinkConfig = Field(default_factory=BlinkConfig)
    swap: SwapConfig = Field(default_factory=SwapConfig)
    static: StaticConfig = Field(default_factory=StaticConfig)
    occlusion: OcclusionSignalConfig = Field(default_factory=OcclusionSignalConfig)


class AggregateConfig(_Strict):
    method: Literal["mean", "median", "topk"] = "mean"
    topk: int = Field(5, ge=1)
    other_topk: int = Field(
        3,
        ge=1,
        description="the faces beside the main one are judged on the mean of their this many highest scores"
        " (about a second of them at scoring.other_rate_hz): a photo or a phone held up for a moment counts",
    )
    review_band: float = Field(
        0.1, ge=0, lt=0.5, description="scores within this distance of the threshold go to review"
    )


Action = Literal["spoof", "review", "inform", "ignore"]  # inform: named in reasons, never moves the decision


class DecisionConfig(_Strict):
    """What each session signal does to the decision (the spoof score's own rule is ``aggregate``).

    The decision is the most severe of the spoof score's (live / review / spoof) and the
    actions of the signals that fired (``ignore`` < ``review`` < ``spoof``); every rule that
    fired is named in ``reasons``.
    """

    swap: Action = "spoof"
    static: Action = "spoof"
    no_blink: Action = "review"
    occluded: Action = "review"
    multi_face: Action = "review"
    linked: Action = "review"
    reapplied: Action = Field(
        "inform", description="the same applicant's face in an earlier session (linked:reapplied)"
    )
    too_short: Action = Field(
        "review", description="face seen under static.min_static_s (a photo, a 1-frame video): never live unseen"
    )
    partial_decode: Action = Field(
        "review", description="part of the video could not be decoded (bad packets, a damaged or truncated file)"
    )
    other_face: Action = Field(
        "review",
        description="a face beside the main one scores as a spoof (the mean of the other faces' aggregate.other_topk"
        " highest deciding scores reaches the spoof edge): a photo or a screen held up in view",
    )
    multi_face_ratio: float = Field(
        0.2, gt=0, le=1, description="share of sampled frames with 2+ faces that fires multi_face"
    )
    scorers: list[str] | None = Field(
        default_factory=lambda: ["reference"],
        description="scorers whose score decides; null = every one whose card records a real-data measurement",
    )
    combine: Literal["most_severe", "mean"] = Field("most_severe", description="how several deciding scores combine")
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="session thresholds by scorer name, in place of the cards' (what `liveness calibrate` writes)",
    )
    calibration: str | None = Field(
        None, description="the calibration in force (written by `liveness calibrate`; named in run summaries)"
    )
    signal_card: str | None = Field(
        None,
        description="the signal card (which rules were measured on real footage and may decide); null = the shipped"
        " models/signals/card.json",
    )
    max_false_fire_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="a rule that fired falsely on more than this share of the card's real live sessions only informs",
    )

    @field_validator("thresholds")
    @classmethod
    def _in_unit_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: t for name, t in value.items() if not 0 < t <= 1}
        if bad:
            raise ValueError(f"thresholds must lie in (0, 1], got {bad}")
        return value


class LinksConfig(_Strict):
    """Links between sessions (:mod:`pipeline.links`): the same face, the same recording."""

    enabled: bool = Field(True, description="match every scanned session against the whole output")
    same_face_distance: float | None = Field(
        None, gt=0, lt=2, description="templates closer than this are one person; null = the identity card's threshold"
    )
    hash_hz: float = Field(6.0, gt=0, le=30, description="frames per second fingerprinted for same_video")
    max_hash_bits: int = Field(8, ge=0, le=32, description="perceptual hashes this many bits apart match")
    min_matched: float = Field(
        0.7, gt=0, le=1, description="share of the shorter video's fingerprints that must match, in step"
    )
    min_frames: int = Field(4, ge=1, description="fingerprints a video needs to be matched at all")


class EvidenceConfig(_Strict):
    """Face thumbnails kept for the report (biometric data: keep few, or none)."""

    enabled: bool = True
    flagged_only: bool = True
    top_spoof: int = Field(3, ge=0, le=20, description="thumbnails of the highest-scoring frames per session")
    size: int = Field(112, ge=32, le=512)
    jpeg_quality: int = Field(80, ge=20, le=100)


class OutputConfig(_Strict):
    sessions_per_file: int = Field(500, ge=1)


class RayConfig(_Strict):
    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    max_in_flight: int = Field(0, ge=0, description="sessions analysing or awaiting scores at once, 0 = 4 x CPUs")
    session_retries: int = Field(1, ge=0)


class ScorerConfig(_Strict):
    """One more named scorer beside the ``b2`` (the ``model`` checkpoint)."""

    model: str | None = Field(
        None, description="checkpoint directory with its card; null = the shipped one of this name"
    )


class ScanConfig(_Strict):
    """Everything ``liveness scan`` can be told, with its defaults."""

    model: str | None = None
    scorers: dict[str, ScorerConfig] = Field(default_factory=lambda: {"reference": ScorerConfig()})
    limit: int | None = Field(None, ge=1)
    input: InputConfig = Field(default_factory=InputConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    decision: DecisionConfig = Field(default_factory=DecisionConfig)
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    links: LinksConfig = Field(default_factory=LinksConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    ray: RayConfig = Field(default_factory=RayConfig)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"decode.sample_fps=10"`` to ``(["decode", "sample_fps"], 10.0)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    if not key.strip():
        raise ConfigError(f"override {text!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        if raw.lstrip()[:1] in "[{":
            raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
        value = raw
    if isinstance(value, dict) and raw.lstrip()[:1] != "{":
        value = raw  # free text such as "data: synthetic" is a string, not a mapping
    return key.strip().split("."), value


def _set_path(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def load_flat_config(cls: type[_M], path: Path, overrides: list[str], what: str) -> _M:
    """A one-level YAML config (the training side's ``configs/*.yaml``) with ``key=value``
    overrides (``group.key=value`` for a nested group), validated by ``cls``; every problem is a
    :class:`ConfigError` naming the key."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {what} config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{what} config {path} must be a mapping of keys, got {type(data).__name__}")
    for text in overrides:
        key, value = parse_override(text)
        section = data
        for part in key[:-1]:  # a dotted key sets one value of a nested group (train's augment.*)
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                raise ConfigError(f"override {text!r}: {part} is not a group of settings")
        section[key[-1]] = value
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {what} config ({path}): {problems}") from exc


def load_scan_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ScanConfig:
    """The validated scan config: defaults, then the YAML file, then ``section.key=value`` overrides."""
    path = Path(path) if path is not None else DEFAULT_SCAN_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    for text in overrides or []:
        key, value = parse_override(text)
        _set_path(data, key, value)
    try:
        return ScanConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid scan config ({path}): {problems}") from exc
