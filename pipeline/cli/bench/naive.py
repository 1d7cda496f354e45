"""The naive baseline: the same outputs as the scan, frame by frame in one process, as the seed's
scripts compute them."""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.cli.bench.stages import bench_scorers
from pipeline.config import ScanConfig
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.run.progress import Progress
from pipeline.scoring.model import ModelCard
from pipeline.scoring.registry import Scorers, crop_specs
from pipeline.video.decode import _TimeSampler
from pipeline.video.sources import Session

NAIVE_SESSIONS = 12  # the naive loop's share of the sessions (it takes seconds per session)


def measure_naive(sessions: list[Session], config: ScanConfig, checkpoint: Path, card: ModelCard) -> dict:
    """The seed-style loop computing the scan's outputs, frame by frame, in this process:
    OpenCV decodes every frame; every sampled frame gets detection, the face mesh (EAR, face
    shape), similarity to the previous crop, occlusion, the identity embedding and every
    scorer (the b2 in eager torch), each on one crop at a time; then each session's blinks."""
    import cv2
    import torch

    from pipeline.faces.identity import FaceEmbedder, unusable
    from pipeline.faces.landmarks import FaceMesh
    from pipeline.scoring.model import load_checkpoint, preprocess
    from pipeline.session.frame_path import MESH_CROP, mesh_points
    from pipeline.signals.blinks import count_blinks, eye_aspect_ratios
    from pipeline.signals.occlusion import DEFAULT_OCCLUSION_DIR, OcclusionScorer
    from pipeline.signals.swap import face_shape, similarity

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    others = [e for e in bench_scorers(config, checkpoint) if e.name != "b2"]
    more = Scorers(others, backend=config.scoring.backend, threads=1, cache_dir=config.scoring.onnx_cache)
    specs = crop_specs(others)
    detector = FaceDetector.from_config(config.detect)
    mesh = FaceMesh(tracking=True)
    occlusion = OcclusionScorer(
        config.signals.occlusion.model or DEFAULT_OCCLUSION_DIR, cache_dir=config.scoring.onnx_cache
    )
    embedder = FaceEmbedder()
    crops = 0
    started = time.perf_counter()
    with Progress("naive loop", len(sessions)) as progress:
        for session in sessions:
            capture = cv2.VideoCapture(session.uri)
            sampler, kept, t0, previous = _TimeSampler(config.decode.sample_fps), 0, None, None
            times, ears_l, ears_r = [], [], []
            mesh.reset()
            while kept < config.decode.max_frames:
                ok, bgr = capture.read()
                if not ok:
                    break
                t = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                t0 = t if t0 is None else t0
                if not sampler.take(t - t0):
                    continue
                kept += 1
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                detections = detector.detect(rgb)
                main, crop = crop_main_face(rgb, detections, card.crop_spec)
                if main is None or crop is None:
                    continue
                box = detections.box(main)
                crops += 1
                with torch.inference_mode():
                    torch.softmax(model(torch.from_numpy(preprocess(crop[None], card))), dim=1)
                more({spec.key: spec.crop(rgb, box)[None] for spec in specs})
                if previous is not None:
                    similarity(previous, crop)
                previous = crop
                mesh_crop = MESH_CROP.crop(rgb, box)
                landmarks = mesh.landmarks(mesh_crop)
                if landmarks is None:
                    continue
                ear_l, ear_r = eye_aspect_ratios(landmarks)
                times.append(t - t0)
                ears_l.append(ear_l)
                ears_r.append(ear_r)
                face_shape(landmarks)
                occlusion.score_many([(mesh_crop, landmarks)])
                points = mesh_points(landmarks, box)
                if unusable(points, min_eye_px=config.identity.min_eye_px, max_turn=config.identity.max_turn) is None:
                    embedder.embed([embedder.chip(rgb, points)])
            if len(times) > 1:
                count_blinks(times, ears_l, ears_r, config.signals.blinks)
            capture.release()
            progress.advance()
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "sessions": len(sessions),
        "crops": crops,
        "sessions_per_s": len(sessions) / wall,
        "crops_per_s": crops / wall,
    }
