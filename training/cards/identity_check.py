"""Checks the ONNX export of dlib's face-recognition ResNet against dlib itself on real faces:
the same embeddings (pair by pair), the same verdicts at dlib's distance, and the time each takes
(``uv run python -m training.cards.identity_export --out F --check``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.cards.dlib_format import THRESHOLD
from training.data.real_data import REAL

# ----------------------------------------------------------------------------------------------------------
# verification against dlib


IMAGE_DIR = REAL / "images"


def real_chips(
    image_dir: Path = IMAGE_DIR, max_faces: int = 4, detect_px: int = 1000
) -> tuple[list[np.ndarray], list[str]]:
    """Aligned 150 x 150 chips of the faces in the photographs under ``image_dir``, with their sources.

    dlib's frontal face detector (on the photo shrunk to ``detect_px``), its 5-point predictor (on the full
    photo) and ``dlib.get_face_chip(img, shape, 150, 0.25)``; at most ``max_faces`` (largest) per photo."""
    import dlib
    from PIL import Image

    from pipeline.faces.identity import CHIP_PADDING, CHIP_SIZE, network_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(network_path().parent / "shape_predictor_5_face_landmarks.dat"))
    chips, names = [], []
    for path in sorted(image_dir.rglob("*")):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        image = np.asarray(Image.open(path).convert("RGB"))
        scale = min(1.0, detect_px / max(image.shape[:2]))
        small = (
            image
            if scale == 1.0
            else np.asarray(
                Image.fromarray(image).resize((round(image.shape[1] * scale), round(image.shape[0] * scale)))
            )
        )
        rects = sorted(detector(small, 1 if max(small.shape[:2]) < 700 else 0), key=lambda d: -d.area())
        for n, d in enumerate(rects[:max_faces]):
            rect = dlib.rectangle(int(d.left() / scale), int(d.top() / scale),
                                  int(d.right() / scale), int(d.bottom() / scale))  # fmt: skip
            shape = predictor(image, rect)
            chips.append(np.asarray(dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)))
            names.append(f"{path.parent.name}/{path.name}#{n}")
    return chips, names


def _session(onnx_path: str | Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _pair_stats(a: np.ndarray, b: np.ndarray, threshold: float) -> dict[str, Any]:
    iu = np.triu_indices(len(a), 1)
    da = np.linalg.norm(a[:, None] - a[None], axis=-1)[iu]
    db = np.linalg.norm(b[:, None] - b[None], axis=-1)[iu]
    flips = np.nonzero((da < threshold) != (db < threshold))[0]
    return {
        "pairs": int(da.size),
        "same_at_threshold_dlib": int((da < threshold).sum()),
        "decision_flips": int(flips.size),
        "max_pair_distance_change": float(np.abs(da - db).max()),
        "closest_pair_to_threshold": float(np.abs(da - threshold).min()),
    }


def _master_pairs(names: list[str], emb: np.ndarray, threshold: float) -> dict[str, Any] | None:
    csv = IMAGE_DIR / "deepface" / "master.csv"
    if not csv.is_file():
        return None
    faces: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        faces.setdefault(name.split("#")[0], []).append(i)
    right = total = 0
    for line in csv.read_text().splitlines()[1:]:
        x, y, decision = line.strip().split(",")
        fx, fy = faces.get(f"deepface/{x}", []), faces.get(f"deepface/{y}", [])
        if len(fx) != 1 or len(fy) != 1:
            continue
        same = float(np.linalg.norm(emb[fx[0]] - emb[fy[0]])) < threshold
        right += same == (decision == "Yes")
        total += 1
    return {"pairs": total, "right": right}


def check(onnx_path: str | Path, image_dir: Path = IMAGE_DIR, reps: int = 2) -> dict[str, Any]:
    """Compare the ONNX model with dlib on real chips: embeddings, pair decisions at 0.6, CPU time.

    Times are CPU seconds (``time.process_time``) and wall seconds per embedding, measured in this
    process on the same chips; onnxruntime runs with one intra-op thread."""
    import dlib

    from pipeline.faces.identity import network_path

    chips, names = real_chips(image_dir)
    batch = np.stack(chips)
    net = dlib.face_recognition_model_v1(str(network_path()))  # dlib's own code: the reference

    def dlib_embed(some: list[np.ndarray]) -> np.ndarray:
        vectors = net.compute_face_descriptor([np.ascontiguousarray(c) for c in some])
        return np.asarray([np.asarray(v) for v in vectors], np.float32)

    dlib_embed(chips[:1])  # warm-up
    ref, dlib_cpu, dlib_wall = _timed(lambda: dlib_embed(chips))
    one = chips[: min(16, len(chips))]
    ref1, dlib1_cpu, dlib1_wall = _timed(lambda: [np.asarray(net.compute_face_descriptor(c)) for c in one])
    sess = _session(onnx_path)
    run = lambda x: sess.run(["embeddings"], {"chips": x})[0]  # noqa: E731
    for _ in range(3):
        run(batch[:1]), run(batch[:8])
    out1 = np.concatenate([run(batch[i : i + 1]) for i in range(len(batch))])
    out8 = np.concatenate([run(batch[i : i + 8]) for i in range(0, len(batch), 8)])
    _, b1_cpu, b1_wall = _timed(lambda: [run(batch[i : i + 1]) for _ in range(reps) for i in range(len(batch))])
    n8 = len(batch) // 8 * 8
    _, b8_cpu, b8_wall = _timed(lambda: [run(batch[i : i + 8]) for _ in range(reps) for i in range(0, n8, 8)])
    dist1 = np.linalg.norm(out1 - ref, axis=1)
    dist8 = np.linalg.norm(out8 - ref, axis=1)
    ms = 1000.0
    return {
        "onnx": str(onnx_path),
        "onnx_bytes": Path(onnx_path).stat().st_size,
        "chips": len(chips),
        "images": len({n.split("#")[0] for n in names}),
        "max_abs_diff": float(max(np.abs(out1 - ref).max(), np.abs(out8 - ref).max())),
        "max_distance_batch1": float(dist1.max()),
        "mean_distance_batch1": float(dist1.mean()),
        "max_distance_batch8": float(dist8.max()),
        "max_abs_diff_batch1_vs_batch8": float(np.abs(out1 - out8).max()),
        "dlib_single_vs_batched_max_abs": float(np.abs(np.stack(ref1) - ref[: len(one)]).max()),
        "embedding_norm_mean": float(np.linalg.norm(ref, axis=1).mean()),
        "pairs_all_chips": _pair_stats(ref, out1, THRESHOLD),
        "master_csv_dlib": _master_pairs(names, ref, THRESHOLD),
        "master_csv_onnx": _master_pairs(names, out1, THRESHOLD),
        "ms_per_embedding": {
            "dlib_batched_list_cpu": dlib_cpu / len(chips) * ms,
            "dlib_batched_list_wall": dlib_wall / len(chips) * ms,
            "dlib_single_cpu": dlib1_cpu / len(one) * ms,
            "dlib_single_wall": dlib1_wall / len(one) * ms,
            "onnx_batch1_cpu": b1_cpu / (reps * len(batch)) * ms,
            "onnx_batch1_wall": b1_wall / (reps * len(batch)) * ms,
            "onnx_batch8_cpu": b8_cpu / (reps * n8) * ms,
            "onnx_batch8_wall": b8_wall / (reps * n8) * ms,
        },
        "dlib_version": dlib.__version__,
    }
