"""Training the region-occlusion model on synthetic occluders, and measuring it on held-out subjects.

No data set of occluded faces can be downloaded here, so the truth comes from the
renderer of :mod:`training.data.synth`: a session of kind ``occluded`` draws hands, masks,
sunglasses, eye patches or cards over exactly its ``occluded_regions``. Every frame goes
through the scan's own per-frame path (:class:`pipeline.session.frame_path.FramePath`:
face detection, the main face followed, the 1.6x / 192 px mesh crop, face mesh with
tracking, :func:`pipeline.faces.landmarks.region_crops`), so the model is trained on the
crops it will be shown, including the landmarks face mesh guesses under an occluder.

Subjects are split by :func:`training.data.datasets.split_for_subject`: the network learns on
train subjects, thresholds are chosen on val subjects, and every reported number comes
from test subjects, first on single frames, then on whole session videos (encoded,
decoded and sampled like a scan) under the session rule of
:func:`pipeline.signals.occlusion.occluded_regions`.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from pipeline.checkpoint import save_checkpoint
from pipeline.config import DEFAULT_MIN_FRACTION, DetectConfig, OcclusionSignalConfig, SignalsConfig
from pipeline.schema import REGIONS
from pipeline.scoring.model import ModelCard
from pipeline.session.frame_path import FramePath
from pipeline.signals.occlusion import (
    OcclusionCard,
    OcclusionScorer,
    create_network,
    frame_region_crops,
    occluded_regions,
    preprocess,
    region_logits,
)
from pipeline.video.decode import SampledFrame, VideoReader
from training.data.datasets import SPLIT_FRACTIONS, SPLITS, split_for_subject
from training.data.face_sources import FaceSource, load_face_sources
from training.data.synth import random_spec, render_session_frames
from training.data.video_writer import write_video

log = logging.getLogger(__name__)

# Still frames: short sessions of these kinds, a few frames each (0.5 s apart, so the head
# moves and the eyes sometimes blink), JPEG-compressed as a video codec would.
KIND_MIX = {"occluded": 0.6, "live": 0.3, "print": 0.05, "replay": 0.05}
FRAMES_PER_SESSION = 4
SESSION_SECONDS = 2.0
JPEG_QUALITY = (50, 95)
ROTATED_SHARE = 0.2  # portrait frames, as phone sessions are once turned upright
# Session videos for the session-level measurement.
EVAL_SECONDS = 2.4
EVAL_FPS = 15.0
EVAL_SAMPLE_FPS = 5.0  # the scanner's default sampling
EVAL_OCCLUDED_SHARE = 0.6
MIN_FRACTION_SWEEP = (0.1, 0.2, 0.3, 0.5, 0.7)
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)


@dataclass
class RegionData:
    """Region crops of rendered frames with their truth.

    ``crops`` (N, R, S, S, 3) uint8 in :data:`REGIONS` order, ``labels`` (N, R) float32
    (1 = the renderer covered that region), ``subjects`` one per row; ``frames_rendered``
    and ``occluded_rendered`` (covered frames per region) also count the frames where no
    face or no landmarks were found, which have no row.
    """

    crops: np.ndarray
    labels: np.ndarray
    subjects: list[str]
    frames_rendered: int
    occluded_rendered: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def summary(self) -> dict:
        return {
            "frames_rendered": self.frames_rendered,
            "frames_with_landmarks": len(self),
            "subjects": len(set(self.subjects)),
            "occluded_frames_rendered": {r: int(n) for r, n in zip(REGIONS, self.occluded_rendered, strict=False)},
            "occluded_frames_with_landmarks": {r: int(self.labels[:, i].sum()) for i, r in enumerate(REGIONS)},
        }


# The scan's per-frame path with its signals on, but without the occlusion model being trained.
PATH_SIGNALS = SignalsConfig(occlusion=OcclusionSignalConfig(enabled=False))


def scanner_path() -> FramePath:
    """The scan's per-frame path (default detection, crop and face mesh), whose face-mesh
    crops and landmarks are the occlusion model's inputs."""
    return FramePath(ModelCard().crop_spec, DetectConfig(), PATH_SIGNALS)


def mesh_faces(path: FramePath, frames: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray] | None]:
    """Per frame of one video, ``(mesh_crop, landmarks)`` of its main face as the scan finds
    them (the face followed, the mesh tracked), or None without a face or landmarks."""
    path.new_session()
    for i, frame in enumerate(frames):
        step = path.step(SampledFrame(index=i, pts_s=float(i), image=frame))
        yield None if step.mesh_crop is None or step.landmarks is None else (step.mesh_crop, step.landmarks)


def subjects_by_split(sources: Sequence[FaceSource], seed: int) -> dict[str, list[str]]:
    """Subject ids of each split (train/val/test); no subject is in two."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for source in sources:
        out[split_for_subject(source.subject_id, seed)].append(source.subject_id)
    return out


def _training_occlusion(rng: np.random.Generator) -> tuple[str, ...]:
    """Regions to cover: one region, the natural pairs (eyes: sunglasses; nose and mouth: a
    mask), or any two or three regions, so every combination is seen."""
    u = rng.random()
    if u < 0.55:
        return (REGIONS[rng.integers(len(REGIONS))],)
    if u < 0.85:
        return (("left_eye", "right_eye"), ("nose", "mouth"))[rng.integers(2)]
    chosen = set(rng.choice(REGIONS, size=int(rng.integers(2, 4)), replace=False))
    return tuple(r for r in REGIONS if r in chosen)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """An RGB frame after a round trip through JPEG at ``quality`` (compression loss, as in a video)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding of a rendered frame failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def render_region_data(
    sources: Sequence[FaceSource],
    subjects: Sequence[str],
    n_frames: int,
    card: OcclusionCard,
    rng: np.random.Generator,
    path: FramePath,
) -> RegionData:
    """Render about ``n_frames`` frames of ``subjects`` (sessions mixed by :data:`KIND_MIX`) and
    cut their region crops through the scanner's path; the truth is the session's regions."""
    kinds = list(KIND_MIX)
    weights = np.array(list(KIND_MIX.values()))
    crops, labels, subject_of = [], [], []
    rendered, occluded_rendered = 0, np.zeros(len(REGIONS), np.int64)
    while rendered < n_frames:
        subject = subjects[int(rng.integers(len(subjects)))]
        kind = str(rng.choice(kinds, p=weights / weights.sum()))
        spec = random_spec(
            f"occ{rendered:06d}", kind, [subject], rng,
            duration_s=SESSION_SECONDS, fps=FRAMES_PER_SESSION / SESSION_SECONDS, rotated=rng.random() < ROTATED_SHARE,
        )  # fmt: skip
        if kind == "occluded":
            spec = replace(spec, occluded_regions=_training_occlusion(rng))
        truth = np.array([r in spec.occluded_regions for r in REGIONS], np.float32)
        quality = int(rng.integers(*JPEG_QUALITY))
        frames = (_jpeg(frame, quality) for frame in render_session_frames(spec, sources, upright=True))
        for face in mesh_faces(path, frames):
            rendered += 1
            occluded_rendered += truth.astype(np.int64)
            if face is not None:
                crops.append(frame_region_crops(*face, card))
                labels.append(truth)
                subject_of.append(subject)
    size = card.input_size
    return RegionData(
        crops=np.stack(crops) if crops else np.zeros((0, len(REGIONS), size, size, 3), np.uint8),
        labels=np.stack(labels) if labels else np.zeros((0, len(REGIONS)), np.float32),
        subjects=subject_of,
        frames_rendered=rendered,
        occluded_rendered=occluded_rendered,
    )


def augment_regions(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation of region crops (N, R, S, S, 3): flips, the jitter of landmark
    placement (shift, zoom, turn), brightness, contrast and focus."""
    out = np.empty_like(crops)
    size = crops.shape[2]
    for index in np.ndindex(crops.shape[:2]):
        image = crops[index]
        if rng.random() < 0.5:
            image = image[:, ::-1]
        m: np.ndarray = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-10, 10), rng.uniform(0.9, 1.1))
        m[:, 2] += rng.uniform(-0.08, 0.08, 2) * size
        image = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), borderMode=cv2.BORDER_REFLECT)
        if rng.random() < 0.2:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
        gain, bias = rng.uniform(0.75, 1.25), rng.uniform(-25, 25)
        out[index] = np.clip(image.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return out


def predict(network, crops: np.ndarray, card: OcclusionCard, batch_size: int = 256) -> np.ndarray:
    """Probabilities (N, R) of the torch network (evaluation mode) for region crops."""
    import torch

    network.eval()
    out = [np.zeros((0, len(REGIONS)), np.float32)]
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = torch.from_numpy(preprocess(crops[i : i + batch_size], card))
            out.append(torch.sigmoid(region_logits(network, x)).numpy())
    return np.concatenate(out)


def _bce(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def fit(
    train: RegionData,
    val: RegionData,
    card: OcclusionCard,
    *,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 3e-3,
):
    """Train with Adam and a cosine schedule; returns the network of the epoch with the
    lowest validation loss, and the per-epoch history."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 11])
    network = create_network(card)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(epochs, 1))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_loss, best_state, history = math.inf, None, []
    for epoch in range(1, epochs + 1):
        network.train()
        started, order, total, steps = time.perf_counter(), rng.permutation(len(train)), 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            if len(idx) < 2:  # batch norm needs more than one frame
                continue
            x = torch.from_numpy(preprocess(augment_regions(train.crops[idx], rng), card))
            loss = loss_fn(region_logits(network, x), torch.from_numpy(train.labels[idx]))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, steps = total + loss.item(), steps + 1
        scheduler.step()
        val_loss = _bce(predict(network, val.crops, card), val.labels) if len(val) else math.nan
        history.append(
            {
                "epoch": epoch,
                "train_loss": round(total / max(steps, 1), 5),
                "val_loss": round(val_loss, 5),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        log.info(
            "occlusion epoch %d/%d: train loss %.4f, val loss %.4f", epoch, epochs, history[-1]["train_loss"], val_loss
        )
        if best_state is None or val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
    network.load_state_dict(best_state)
    return network.eval(), history


# --------------------------------------------------------------------------- measuring


def _counts(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Precision, recall and the counts behind them for one region's boolean predictions."""
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp + fp + fn else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "positives": int(truth.sum()),
        "negatives": int((~truth).sum()),
    }


def choose_thresholds(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per region, the threshold of :data:`THRESHOLD_GRID` with the best F1 on ``probs``
    (the validation split); the middle of the best ones when several tie; 0.5 without
    positives or negatives to choose from."""
    thresholds = {}
    for i, region in enumerate(REGIONS):
        truth = labels[:, i] > 0.5
        if truth.all() or not truth.any():
            thresholds[region] = 0.5
            continue
        pred = probs[:, i][None, :] >= THRESHOLD_GRID[:, None]
        tp = (pred & truth).sum(axis=1)
        f1 = 2 * tp / (pred.sum(axis=1) + truth.sum())
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        thresholds[region] = float(THRESHOLD_GRID[best[len(best) // 2]])
    return thresholds


def frame_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: dict[str, float]) -> dict:
    """Per-region precision and recall of single frames at the given thresholds."""
    return {r: _counts(probs[:, i] >= thresholds[r], labels[:, i] > 0.5) for i, r in enumerate(REGIONS)}


def session_metrics(sessions: list[dict], thresholds: dict[str, float], min_fraction: float) -> dict:
    """Per-region precision and recall of :func:`occluded_regions` over session results
    (each with ``truth`` regions and per-frame ``scores``)."""
    predicted = [set(occluded_regions(s["scores"], thresholds, min_fraction)) for s in sessions]
    truth = [set(s["truth"]) for s in sessions]
    per_region = {
        r: _counts(np.array([r in p for p in predicted], bool), np.array([r in t for t in truth], bool))
        for r in REGIONS
    }
    matches = [p == t for p, t in zip(predicted, truth, strict=False)]
    return {
        "min_fraction": min_fraction,
        "per_region": per_region,
        "sessions": len(sessions),
        "exact_match": round(float(np.mean(matches)), 4) if sessions else None,
    }


def render_eval_sessions(
    scorer: OcclusionScorer,
    sources: Sequence[FaceSource],
    subjects: Sequence[str],
    n_sessions: int,
    rng: np.random.Generator,
    path: FramePath,
) -> list[dict]:
    """Occluded and live session videos of ``subjects``, written as H.264 files, decoded and
    sampled as a scan does, and scored frame by frame; one result per session."""
    results = []
    with tempfile.TemporaryDirectory(prefix="occlusion-eval-") as folder:
        for i in range(n_sessions):
            kind = "occluded" if rng.random() < EVAL_OCCLUDED_SHARE else "live"
            subject = subjects[int(rng.integers(len(subjects)))]
            spec = random_spec(
                f"occ_eval{i:04d}_{kind}",
                kind,
                [subject],
                rng,
                duration_s=EVAL_SECONDS,
                fps=EVAL_FPS,
                rotated=rng.random() < ROTATED_SHARE,
            )
            video = Path(folder) / f"{spec.session_id}.mp4"
            write_video(
                video,
                render_session_frames(spec, sources),
                fps=spec.fps,
                rotation=spec.rotation,
                crf=int(rng.integers(18, 28)),
            )
            with VideoReader(video, sample_fps=EVAL_SAMPLE_FPS) as reader:
                images = [frame.image for frame in reader.sampled()]
            video.unlink()
            faces = [face for face in mesh_faces(path, images) if face is not None]
            results.append(
                {"session_id": spec.session_id, "subject": subject, "truth": list(spec.occluded_regions),
                 "frames_sampled": len(images), "frames_with_landmarks": len(faces), "scores": scorer.score_many(faces)}
            )  # fmt: skip
    return results


def measure_speed(scorer: OcclusionScorer, faces: Sequence[tuple[np.ndarray, np.ndarray]], repeats: int = 3) -> dict:
    """Milliseconds per face of the scorer, one face per call and in batches of 32 (region
    crops included), on this machine."""
    if not faces:
        return {}
    faces = list(faces) * repeats
    started = time.perf_counter()
    for face in faces:
        scorer(*face)
    single = (time.perf_counter() - started) / len(faces)
    started = time.perf_counter()
    for i in range(0, len(faces), 32):
        scorer.score_many(faces[i : i + 32])
    batched = (time.perf_counter() - started) / len(faces)
    return {
        "ms_per_face_single": round(1000 * single, 3),
        "ms_per_face_batch32": round(1000 * batched, 3),
        "faces": len(faces),
        "runtime": "onnxruntime, 1 thread",
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), shared with other work",
    }


# --------------------------------------------------------------------------- the command


def _card_text(n_sources: int, data: dict[str, RegionData], n_sessions: int) -> dict[str, str]:
    return {
        "trained_on": (
            f"SYNTHETIC occluders only: hands, medical masks, sunglasses, eye patches and cards drawn by "
            f"training/data/people.py over {n_sources} face photographs shipped with matplotlib and scikit-image "
            f"(mostly 25 px LFW faces, upscaled and tinted). {len(data['train'])} train frames "
            f"({len(set(data['train'].subjects))} subjects), thresholds on {len(data['val'])} val frames "
            f"({len(set(data['val'].subjects))} other subjects), metrics on {len(data['test'])} test frames and "
            f"{n_sessions} test session videos ({len(set(data['test'].subjects))} further subjects); split by subject. "
            "It has never seen a real occlusion."
        ),
        "limits": (
            "Measured on synthetic faces and synthetic occluders only: real hands, masks, scarves, hair, glasses, "
            "phones and shadows look different, and these numbers say nothing about them. The truth is the region "
            "the renderer meant to cover; an occluder for one region that also reaches a neighbour's crop (fingers "
            "across the nose reach the top of the mouth crop) counts as a false positive there. Face mesh places "
            "landmarks under an occluder by guessing, and a face it cannot find gets no scores at all. Eyes closed "
            "in a blink are not occlusion (live training frames include blinks). Thresholds come from synthetic "
            "validation subjects; set your own on labelled real sessions before acting on occluded_regions."
        ),
        "session_rule": (
            "occluded_regions(scores, thresholds, min_fraction): a region is occluded when at least min_fraction "
            "of the session's frames with landmarks score at or above the region's threshold (no frames: none)."
        ),
    }


def train_occlusion(out: Path, *, images: int = 6000, sessions: int = 60, epochs: int = 8, seed: int = 0) -> dict:
    """Render the data, train, choose thresholds on val, measure on test subjects (frames and
    session videos), and write the checkpoint and its card to ``out``; returns the metrics."""
    started = time.perf_counter()
    sources = load_face_sources()
    split_subjects = subjects_by_split(sources, seed)
    if any(not split_subjects[s] for s in SPLITS):
        raise ValueError(f"every split needs subjects; got { ({s: len(v) for s, v in split_subjects.items()}) }")
    card = OcclusionCard()
    path = scanner_path()
    data = {}
    for k, (split, share) in enumerate(zip(SPLITS, SPLIT_FRACTIONS, strict=False)):
        n = max(int(round(images * share)), 2)
        data[split] = render_region_data(
            sources, split_subjects[split], n, card, np.random.default_rng([seed, k, 7]), path
        )
        log.info("%s: %s", split, data[split].summary())
    if len(data["train"]) < 2 or len(data["test"]) == 0:
        raise ValueError(
            f"too few frames with landmarks (train {len(data['train'])}, test {len(data['test'])}): raise --images"
        )
    network, history = fit(data["train"], data["val"], card, epochs=epochs, seed=seed)
    card = card.model_validate(
        card.model_dump()
        | {"trained": True, "seed": seed, "version": datetime.now(UTC).strftime("occlusion-synth-%Y%m%d")}
    )
    save_checkpoint(network, card, out)
    scorer = OcclusionScorer(out)  # everything below measures the shipped fp16 weights on ONNX Runtime
    val_probs = scorer.score_crops(data["val"].crops) if len(data["val"]) else np.zeros((0, len(REGIONS)))
    thresholds = choose_thresholds(val_probs, data["val"].labels)
    test_probs = scorer.score_crops(data["test"].crops)
    eval_sessions = render_eval_sessions(
        scorer, sources, split_subjects["test"], sessions, np.random.default_rng([seed, 9]), path
    )
    speed_spec = random_spec("speed", "live", [split_subjects["test"][0]], np.random.default_rng(seed), duration_s=2.0)
    speed_faces = [
        face for face in mesh_faces(path, render_session_frames(speed_spec, sources, upright=True)) if face is not None
    ]
    speed = measure_speed(scorer, speed_faces)
    metrics = {
        "split": "test (subjects held out by split_for_subject)",
        "notes": (
            "frame: single test frames where detection and face mesh found the face (see data.test for the frames "
            "lost); session: test session videos decoded at sample_fps, occluded_regions at min_fraction, a session "
            "whose face was never found reports no region (a miss when it had one)"
        ),
        "frame": frame_metrics(test_probs, data["test"].labels, thresholds),
        "session": session_metrics(eval_sessions, thresholds, DEFAULT_MIN_FRACTION),
        "session_by_min_fraction": {
            str(f): {
                r: {k: m[k] for k in ("precision", "recall")}
                for r, m in session_metrics(eval_sessions, thresholds, f)["per_region"].items()
            }
            for f in MIN_FRACTION_SWEEP
        },
        "val_frame": frame_metrics(val_probs, data["val"].labels, thresholds),
        "session_videos": {
            "sessions": len(eval_sessions),
            "seconds": EVAL_SECONDS,
            "fps": EVAL_FPS,
            "sample_fps": EVAL_SAMPLE_FPS,
            "frames_sampled": int(sum(s["frames_sampled"] for s in eval_sessions)),
            "frames_with_landmarks": int(sum(s["frames_with_landmarks"] for s in eval_sessions)),
            "sessions_without_landmarks": sum(s["frames_with_landmarks"] == 0 for s in eval_sessions),
            "results": [
                {k: v for k, v in s.items() if k != "scores"} | {"predicted": occluded_regions(s["scores"], thresholds)}
                for s in eval_sessions
            ],
        },  # fmt: skip
        "data": {split: d.summary() for split, d in data.items()},
        "speed": speed,
        "history": history,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    card = card.model_validate(card.model_dump() | {
        "thresholds": thresholds,
        "min_fraction": DEFAULT_MIN_FRACTION,
        "reproduce": (
            f"uv run liveness train-occlusion --out {out} --images {images} --sessions {sessions}"
            f" --epochs {epochs} --seed {seed}"
        ),
        "metrics": metrics,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **_card_text(len(sources), data, len(eval_sessions)),
    })  # fmt: skip
    save_checkpoint(network, card, out)
    return metrics
