"""``liveness bench``: what each stage costs per second of video on this machine, what the
whole scan costs against decoding alone, how close it gets to the bound the stages set, and
how it compares with a naive loop computing the same outputs.

On generated sessions (the scan's own sampling and schedules), in one run:

1. each stage alone: decode (PyAV: every frame decoded, the sampled ones converted to RGB:
   what the scan's sampling needs), then the scan's per-frame path over the decoded frames,
   timed per stage (detection, the face-mesh signals, the identity embedding), and the
   scorers (configured backend and batch size) on the faces the schedules pick, plus every
   face of the sessions near a threshold (``scoring.refine_band``), as the scan does. CPU
   seconds per second of video for each. One process per core measures its share of the
   sessions, all at once: a core does less work per second when every core is busy, and the
   bound assumes every core busy;
2. the bound: what the machine could do with the stages perfectly overlapped and no
   overhead: CPU cores / the stages' CPU seconds per session (with a GPU scorer: the
   smaller of its rate and the CPU stages' rate);
3. the scan end to end (``liveness scan`` in a child process: Ray, actors, batching,
   Parquet), its sessions/s from Ray being up to the last commit, the CPU of its whole
   process tree (driver, Ray's processes, workers, actors) and its peak memory (RSS summed,
   and PSS: shared pages counted once). ``cost_vs_decode`` is that CPU per second of video
   over decoding's: 1.0 is the floor of a design that must decode every frame;
4. the naive loop over some of the sessions, computing the same outputs as the scan, frame
   by frame, in one process, the way the seed's scripts work: OpenCV decodes every frame,
   and every sampled frame gets detection, the face mesh, EAR, similarity, occlusion, the
   identity embedding and every scorer, each model on one crop at a time, no Ray.

``pipeline_efficiency`` = scan sessions/s over the bound: what Ray, batching, the driver,
queues and stalls cost, start-up included; ``steady_efficiency`` is the same between the
first and the last finished session, once workers and actors are warm. ``speedup_vs_naive``
= scan sessions/s over the naive loop's.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from pipeline.config import ScanConfig
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.run.progress import Progress
from pipeline.scoring.model import ModelCard
from pipeline.scoring.registry import ScorerEntry, Scorers, crop_specs, scan_scorers
from pipeline.session.aggregate import refinement_crops, worth_refining
from pipeline.session.frame_path import FramePath, SessionFrames, StageCost
from pipeline.session.records import FrameRecords
from pipeline.signals.collector import SessionVerdicts
from pipeline.video.decode import VideoReader, _TimeSampler
from pipeline.video.sources import Session

BENCH_KINDS = ("live", "print", "replay", "live", "swap", "occluded")
NAIVE_SESSIONS = 12  # the naive loop's share of the sessions (it takes seconds per session)
STAGE_CHUNK = 4  # sessions per stage-measurement task (progress moves per chunk)


class _Clock:
    """CPU (all threads of this process) and wall time of a block."""

    def __enter__(self) -> _Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def make_sessions(
    folder: Path, n: int, *, seconds: float, fps: float, size: tuple[int, int], seed: int = 0
) -> list[Session]:
    """``n`` synthetic KYC-like sessions (live, print, replay, swap, occluded in turn) as H.264
    files, rendered once (kept in ``folder``), with a progress bar while rendering."""
    from training.face_sources import load_face_sources
    from training.synth import random_spec, render_session_frames
    from training.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"bench{i:04d}.mp4" for i in range(n)]
    missing = sum(not p.is_file() for p in paths)
    if not missing:
        return [Session(session_id=p.stem, uri=str(p.resolve())) for p in paths]
    sources = load_face_sources()
    ids = [s.subject_id for s in sources]
    rng = np.random.default_rng(seed)
    sessions = []
    with Progress(f"rendering {missing} sessions", missing, enabled=missing > 0) as progress:
        for i, path in enumerate(paths):
            kind = BENCH_KINDS[i % len(BENCH_KINDS)]
            subjects = [ids[j] for j in rng.choice(len(ids), 2, replace=False)]  # drawn always: same files
            if not path.is_file():
                spec = random_spec(f"bench{i:04d}", kind, subjects, rng, duration_s=seconds, fps=fps, size=size)
                write_video(path, render_session_frames(spec, sources, upright=True), fps=fps)
                progress.advance()
            sessions.append(Session(session_id=path.stem, uri=str(path.resolve())))
    return sessions


@dataclass
class StageRun:
    """What :func:`measure_stages` measured: the stages' costs, the sessions' seconds of video,
    their faces, how often each stage ran, the scorers' backends, and (``score=False``) each
    session's crops left for another process to score."""

    stages: dict[str, StageCost]
    video_s: float
    faces: int
    counts: dict[str, int]
    refined: int = 0
    backend: str = ""
    unscored: list[SessionFrames] = field(default_factory=list)

    def add(self, other: StageRun) -> None:
        """Add another run's measurements (the same stages) to this one."""
        for name, cost in other.stages.items():
            self.stages.setdefault(name, StageCost(name)).add(cost.cpu_s, cost.wall_s, cost.items)
        self.video_s += other.video_s
        self.faces += other.faces
        self.refined += other.refined
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.backend = self.backend or other.backend
        self.unscored.extend(other.unscored)


def measure_stages(sessions: list[Session], config: ScanConfig, checkpoint: Path, score: bool = True) -> StageRun:
    """Each stage alone over every session: decoding all of a session's sampled frames, then
    the scan's own per-frame path over them (timed per stage, with the scan's schedules),
    then the scorers on the faces the scan would score. ``score=False`` leaves the scorers
    out and returns the crops to be scored elsewhere."""
    entries = bench_scorers(config, checkpoint)
    specs = crop_specs(entries)
    path = FramePath(
        specs[0], config.detect, config.signals, extra_crops=specs[1:], identity=config.identity,
        fingerprint_hz=config.links.hash_hz, scoring=config.scoring, cache_dir=config.scoring.onnx_cache, timed=True,
    )  # fmt: skip
    decode = StageCost("decode")
    crops: list[SessionFrames] = []
    video_s, counts = 0.0, dict[str, int]()
    for session in sessions:
        result, decode_cost, seconds = stage_session(path, session, config)
        decode.add(*decode_cost)
        video_s += seconds
        for name, n in asdict(result.counts).items():
            counts[name] = counts.get(name, 0) + n
        crops.append(result)
    stages = {"decode": decode, **{name: path.costs[name] for name in ("detect", "signals", "identity")}}
    faces = sum(len(c.scheduled) for c in crops)
    run = StageRun(stages, video_s, faces, counts)
    if not score:
        run.unscored = crops
        return run
    run.stages["score"], run.refined, run.backend = measure_scoring(crops, config, checkpoint)
    return run


def bench_scorers(config: ScanConfig, checkpoint: Path) -> list[ScorerEntry]:
    """The scan's scorers for this config, with the benchmarked b2 checkpoint."""
    return scan_scorers(checkpoint, {name: s.model for name, s in config.scorers.items()})


def stage_session(
    path: FramePath, session: Session, config: ScanConfig
) -> tuple[SessionFrames, tuple[float, float, int], float]:
    """One session as the stage measurement runs it: every sampled frame decoded first (the
    decode cost apart: CPU s, wall s, frames), then the scan's per-frame path over them; and
    the seconds of video decoded."""
    with (
        _Clock() as clock,
        VideoReader(session.uri, sample_fps=config.decode.sample_fps, max_frames=config.decode.max_frames) as video,
    ):
        frames = list(video.sampled())
        seconds = video.report().decoded_until_s or 0.0
    return path.run(frames), (clock.cpu, clock.wall, len(frames)), seconds


def _stack(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def measure_scoring(
    sessions: Sequence[SessionFrames], config: ScanConfig, checkpoint: Path, gpu: bool = False
) -> tuple[StageCost, int, str]:
    """The scan's scoring of these sessions (on the GPU with ``gpu``): their scheduled faces
    in batches of the scan's size, then every other face of the sessions whose score lies
    near a threshold. Returns the cost (items: faces scored), the sessions refined and the
    backends."""
    entries = bench_scorers(config, checkpoint)
    scorers = Scorers(
        entries,
        backend=config.scoring.backend,
        threads=config.scoring.threads or max(1, int(config.scoring.num_cpus)),
        cache_dir=config.scoring.onnx_cache,
        gpu=gpu,
    )
    cost = StageCost("score")
    batch = config.scoring.batch_for(gpu)
    first = _score_batches(scorers, _stack([s.scorer_crops_of(scheduled=True) for s in sessions]), batch, cost)
    refined, start, keys = [], 0, refinement_crops(entries, config)
    for s in sessions:
        n = int(s.scheduled.sum())
        if worth_refining(s.scheduled, {name: v[start : start + n] for name, v in first.items()}, entries, config):
            refined.append(s.scorer_crops_of(scheduled=False, keys=keys))
        start += n
    if refined:
        _score_batches(scorers, _stack(refined), batch, cost)
    return cost, len(refined), ", ".join(f"{name}: {b}" for name, b in scorers.backends().items())


def _score_batches(
    scorers: Scorers, crops: dict[str, np.ndarray], batch: int, cost: StageCost
) -> dict[str, np.ndarray]:
    """Score ``crops`` in batches after one warm-up batch (as the scoring actor runs them),
    charging the time to ``cost``; the scores by scorer."""
    n = len(next(iter(crops.values())))
    if not n:
        return {e.name: np.zeros(0, np.float32) for e in scorers.entries}
    if not cost.items:
        scorers({key: v[:batch] for key, v in crops.items()})  # warm-up: graph optimisation and first allocations
    out: list[dict[str, np.ndarray]] = []
    with _Clock() as clock:
        for i in range(0, n, batch):
            out.append(scorers({key: v[i : i + batch] for key, v in crops.items()}))
    cost.add(clock.cpu, clock.wall, n)
    return _stack(out)


B2_INPUT_SIZES = (128, 260)  # the shipped input size and EfficientNet-B2's native one (the seed recipe)


def resized_b2(checkpoint: Path, size: int, folder: Path) -> Path:
    """A copy of the b2 checkpoint in ``folder`` whose card says input ``size`` (the same
    weights: the network pools globally, so any size runs; for timing, not for verdicts)."""
    from pipeline.checkpoint import CARD_FILE

    copy = folder / f"b2-{size}"
    copy.mkdir()
    for item in checkpoint.iterdir():
        if item.is_file() and item.name != CARD_FILE:
            (copy / item.name).symlink_to(item.resolve())
    card = json.loads((checkpoint / CARD_FILE).read_text()) | {"input_size": size}
    (copy / CARD_FILE).write_text(json.dumps(card))
    return copy


def measure_b2_input_sizes(config: ScanConfig, checkpoint: Path, gpu: bool = False, n: int = 64) -> dict:
    """The b2 scorer's cost per crop at each of :data:`B2_INPUT_SIZES`, on the scan's backend
    and batch size, over ``n`` random crops each, in one run. The rest of the scan's cost
    does not depend on the input size."""
    decision = config.decision.model_copy(update={"scorers": None})  # the b2 is the only scorer left to decide
    b2_only = config.model_copy(update={"scorers": {}, "decision": decision})
    rng = np.random.default_rng(0)
    cost_ms = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in B2_INPUT_SIZES:
            copy = resized_b2(checkpoint, size, Path(tmp))
            [spec] = crop_specs(bench_scorers(b2_only, copy))
            faces = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            crops = SessionFrames(  # random faces, all scheduled: nothing to refine
                FrameRecords.empty(), faces, SessionVerdicts(), {spec.key: faces}, scheduled=np.ones(n, bool)
            )
            cost, _, _ = measure_scoring([crops], b2_only, copy, gpu)
            cost_ms[str(size)] = round(1e3 * cost.cpu_s / n, 2)
    low, high = (cost_ms[str(s)] for s in B2_INPUT_SIZES)
    return {"b2_cpu_ms_per_crop_by_input": cost_ms, "b2_260_vs_128_cost": round(high / max(low, 1e-9), 2)}


def measure_stages_on_all_cores(
    sessions: list[Session],
    config: ScanConfig,
    checkpoint: Path,
    processes: int,
    *,
    gpu_scorer: bool = False,
) -> StageRun:
    """:func:`measure_stages` in ``processes`` processes at once, on chunks of the sessions;
    their measurements summed (a CPU stage's rate is then per core). A GPU scorer is measured
    once, here, on all the crops: the scan has one per GPU."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    chunks = [sessions[i : i + STAGE_CHUNK] for i in range(0, len(sessions), STAGE_CHUNK)]
    total: StageRun | None = None
    with (
        Progress("measuring each stage", len(sessions)) as progress,
        ProcessPoolExecutor(
            max(1, min(processes, len(chunks))), mp_context=multiprocessing.get_context("spawn")
        ) as pool,
    ):
        futures = {
            pool.submit(measure_stages, chunk, config, checkpoint, not gpu_scorer): len(chunk) for chunk in chunks
        }
        for future in as_completed(futures):
            run = future.result()
            if total is None:
                total = run
            else:
                total.add(run)
            progress.advance(futures[future])
    assert total is not None
    if gpu_scorer:
        total.stages["score"], total.refined, total.backend = measure_scoring(
            total.unscored, config, checkpoint, gpu=True
        )
        total.unscored = []
    return total


class TreeUsage:
    """Samples, in a thread, a process and all its descendants (Ray's processes, workers and
    actors): the summed RSS every ``interval_s``, the summed PSS (shared pages split between
    the processes that map them: what the tree really holds) every ``pss_interval_s``, and
    each process's CPU time (user + system) as last seen, summed in :attr:`cpu_s`. PSS costs
    the kernel a walk of every page table (67 ms of CPU per sample of a scan's processes,
    measured): sampled as often as RSS it would take a sixth of a 2-core machine from the
    scan being measured. A process that ends between two samples loses its last interval's
    CPU (at most ``interval_s`` each)."""

    def __init__(self, pid: int, interval_s: float = 0.2, pss_interval_s: float = 3.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_interval_s = pss_interval_s
        self.peak_rss = self.peak_pss = 0
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, create time) -> CPU seconds last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every process of the tree, as last sampled."""
        return sum(self._cpu.values())

    def _sample(self, with_pss: bool) -> None:
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        rss = pss = 0
        for p in tree:
            try:
                rss += p.memory_info().rss
                times = p.cpu_times()
                self._cpu[(p.pid, p.create_time())] = times.user + times.system
                pss += _pss(p.pid) if with_pss else 0
            except (psutil.Error, OSError):
                continue
        self.peak_rss = max(self.peak_rss, rss)
        if with_pss:
            self.peak_pss = max(self.peak_pss, pss)

    def _run(self) -> None:
        next_pss = time.monotonic() + 1.0  # the first PSS once the processes are up
        while not self._stop.is_set():
            with_pss = time.monotonic() >= next_pss
            self._sample(with_pss)
            if with_pss:
                next_pss = time.monotonic() + self.pss_interval_s
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeUsage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pss(pid: int) -> int:
    """A process's proportional set size in bytes (Linux; its RSS elsewhere)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return psutil.Process(pid).memory_info().rss


def measure_scan(sessions: list[Session], config: ScanConfig, checkpoint: Path) -> dict:
    """``liveness scan`` as a user runs it, in a child process with this config, into a
    temporary output: throughput and stage counts from its run summary (Ray's start-up
    apart), the CPU and peak memory of the whole process tree. On a terminal the child's
    own progress bar shows."""
    import subprocess
    import sys

    import yaml

    tty = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="liveness-bench-") as tmp:
        manifest = Path(tmp) / "sessions.csv"
        manifest.write_text("session_id,uri\n" + "".join(f"{s.session_id},{s.uri}\n" for s in sessions))
        config_file = Path(tmp) / "scan.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json") | {"model": str(checkpoint)}))
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "pipeline.cli", "scan", str(manifest), "--out", str(out)]
        command += ["--config", str(config_file), *([] if tty else ["--quiet"])]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=None if tty else subprocess.PIPE)
        with TreeUsage(proc.pid) as usage:
            _, err = proc.communicate()
        if proc.returncode != 0:
            detail = err.decode()[-2000:] if err else "its messages are above"
            raise RuntimeError(f"the benchmark scan failed (exit {proc.returncode}): {detail}")
        [run] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    return {
        "wall_s": run["wall_s"],
        "startup_s": run["startup_s"],
        "sessions": run["sessions"],
        "crops": run["crops"],
        "backend": run["backend"],
        "first_session_s": run["first_session_s"],
        "last_session_s": run["last_session_s"],
        "by_status": run["by_status"],
        "stages": run["stages"],
        "refined": run["refined"],
        "cpu_s": usage.cpu_s,
        "peak_rss_mb": usage.peak_rss / 2**20,
        "peak_pss_mb": usage.peak_pss / 2**20,
    }


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


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass
class BenchResult:
    """Everything ``liveness bench`` measured, and the figures derived from it."""

    settings: dict
    stages: StageRun
    scan: dict
    naive: dict | None
    gpu_scorer: bool
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        cores = _cores()
        run, scan = self.stages, self.scan
        n = max(int(self.settings["sessions"]), 1)
        video_s = max(run.video_s, 1e-12)
        per_video_s = {name: s.cpu_s / video_s for name, s in run.stages.items()}
        cpu_stages = [name for name in per_video_s if not (self.gpu_scorer and name == "score")]
        per_session = video_s / n
        cpu_bound = cores / max(sum(per_video_s[name] for name in cpu_stages) * per_session, 1e-12)
        score = run.stages["score"]
        scorer_rate = score.items / max(score.wall_s, 1e-12)
        bound = min(scorer_rate * n / max(score.items, 1), cpu_bound) if self.gpu_scorer else cpu_bound
        wall = max(scan["wall_s"], 1e-12)
        scan_rate = scan["sessions"] / wall
        span = scan["last_session_s"] - scan["first_session_s"]
        steady = (scan["sessions"] - 1) / span if span > 0 and scan["sessions"] > 1 else math.nan
        scan_cost = scan["cpu_s"] / (per_session * scan["sessions"])
        decode_cost = per_video_s["decode"]
        identity = run.stages.get("identity")
        slowest = max(per_video_s, key=per_video_s.__getitem__)
        return {
            "cost_vs_decode": round(scan_cost / max(decode_cost, 1e-12), 2),
            "decode_cpu_s_per_video_s": round(decode_cost, 4),
            "scan_cpu_s_per_video_s": round(scan_cost, 4),
            "cpu_ms_per_video_s": {name: round(1e3 * v, 1) for name, v in per_video_s.items()},
            "speedup_vs_naive": round(scan_rate / self.naive["sessions_per_s"], 2) if self.naive else None,
            "scan_sessions_per_s": round(scan_rate, 3),
            "sessions_per_s_per_core": round(scan_rate / cores, 4),
            "naive_sessions_per_s": round(self.naive["sessions_per_s"], 4) if self.naive else None,
            "bound_sessions_per_s": round(bound, 3),
            "pipeline_efficiency": round(scan_rate / bound, 3),
            "steady_sessions_per_s": round(steady, 3),
            "steady_efficiency": round(steady / bound, 3),
            "first_session_s": round(scan["first_session_s"], 2),
            "peak_rss_mb": round(scan["peak_rss_mb"], 1),
            "peak_pss_mb": round(scan["peak_pss_mb"], 1),
            "ray_startup_s": round(scan["startup_s"], 2),
            "scan_wall_s": round(scan["wall_s"], 2),
            "stage_counts_per_video_s": {name: round(v / video_s, 2) for name, v in run.counts.items()},
            "scan_stage_counts": scan["stages"],
            "sessions_refined": {"stages": run.refined, "scan": scan["refined"]},
            "faces": run.faces,
            "faces_scored": score.items,
            "scorer_crops_per_s": round(scorer_rate, 1),
            "identity_ms_per_embedding": round(1e3 * identity.cpu_s / identity.items, 1)
            if identity is not None and identity.items
            else None,
            "bottleneck": slowest,
            "bottleneck_share": round(per_video_s[slowest] / sum(per_video_s.values()), 3),
            "sessions": scan["sessions"],
            "video_s": round(run.video_s, 1),
            "machine": {
                "cores": cores,
                "cpu": platform.processor() or platform.machine(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "gpu": self.extra.get("gpu"),
            },
            "backend": run.backend,
            "settings": self.settings,
            **{k: v for k, v in self.extra.items() if k != "gpu"},
        }


def run_bench(
    config: ScanConfig,
    checkpoint: Path,
    card: ModelCard,
    *,
    sessions: int,
    seconds: float,
    fps: float,
    size: tuple[int, int],
    work_dir: Path,
    naive: bool = True,
    naive_sessions: int = NAIVE_SESSIONS,
) -> BenchResult:
    """Generate the sessions (once; reused from ``work_dir``), then measure everything in one run."""
    import torch

    log = logging.getLogger(__name__)
    batch = make_sessions(
        work_dir / f"{sessions}x{seconds:g}s-{size[0]}x{size[1]}-{fps:g}fps",
        sessions,
        seconds=seconds,
        fps=fps,
        size=size,
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    gpu_scorer = gpu is not None and config.scoring.backend in ("auto", "torch")
    stages = measure_stages_on_all_cores(batch, config, checkpoint, _cores(), gpu_scorer=gpu_scorer)
    log.info("scan end to end: %d sessions", len(batch))
    scan = measure_scan(batch, config, checkpoint)
    naive_result = measure_naive(batch[:naive_sessions], config, checkpoint, card) if naive else None
    log.info("the b2 alone at %s px", " and ".join(map(str, B2_INPUT_SIZES)))
    settings = {
        "sessions": sessions,
        "seconds": seconds,
        "fps": fps,
        "size": f"{size[0]}x{size[1]}",
        "sample_fps": config.decode.sample_fps,
        "max_frames": config.decode.max_frames,
        "batch_size": config.scoring.batch_for(gpu_scorer),
        "input_size": card.input_size,
        "signals": config.signals.enabled,
        "identity": config.identity.enabled,
        "model_version": card.version,
        "scorers": [e.name for e in bench_scorers(config, checkpoint)],
        "naive_sessions": min(naive_sessions, sessions) if naive else 0,
        "rates_hz": {
            "detect_recheck": config.detect.recheck_hz,
            "score": config.scoring.rate_hz,
            "occlusion": config.signals.occlusion.rate_hz,
            "identity": config.identity.rate_hz,
        },
    }
    return BenchResult(
        settings=settings,
        stages=stages,
        scan=scan,
        naive=naive_result,
        gpu_scorer=gpu_scorer,
        extra={"gpu": gpu, **measure_b2_input_sizes(config, checkpoint, gpu_scorer)},
    )


def memory_profile(
    config: ScanConfig,
    checkpoint: Path,
    counts: list[int],
    *,
    seconds: float,
    fps: float,
    size: tuple[int, int],
    work_dir: Path,
) -> dict:
    """Peak memory of scans over ``counts`` sessions each (the same session files, repeated)."""
    folder = work_dir / f"mem-{seconds:g}s-{size[0]}x{size[1]}"
    base = make_sessions(folder, min(max(counts), 10), seconds=seconds, fps=fps, size=size)
    links = folder / "links"
    links.mkdir(exist_ok=True)
    uris = []
    for i in range(max(counts)):  # a file per session (a scan lists each file once): hard links to the few made
        link = links / f"m{i:05d}.mp4"
        if not link.exists():
            os.link(base[i % len(base)].uri, link)
        uris.append(str(link))
    out = {}
    for n in counts:
        logging.getLogger(__name__).info("peak memory: a scan of %d sessions", n)
        sessions = [Session(session_id=f"m{i:05d}", uri=uris[i]) for i in range(n)]
        result = measure_scan(sessions, config, checkpoint)
        out[str(n)] = {
            "peak_rss_mb": round(result["peak_rss_mb"], 1),
            "peak_pss_mb": round(result["peak_pss_mb"], 1),
            "wall_s": round(result["wall_s"], 1),
            "crops": result["crops"],
        }
    return out


def faiss_version() -> str:
    import faiss

    return str(faiss.__version__)


def measure_link_search(new: int = 10_000, stored: int = 1_000_000) -> dict:
    """The 1:N same-face search at archive scale, in a child process: its time and peak memory."""
    import subprocess
    import sys

    code = (
        "import json; from pipeline.cli.bench_links import link_search_child; "
        f"print(json.dumps(link_search_child({int(new)}, {int(stored)})))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with TreeUsage(proc.pid, interval_s=0.05, pss_interval_s=1e9) as memory:
        out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the link search benchmark failed: {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1]) | {
        "peak_rss_mb": round(memory.peak_rss / 2**20, 1),
        "backend": f"faiss {faiss_version()} IndexFlatL2 range search (exact)",
    }


def to_json(summary: dict) -> str:
    """The one-line JSON object the last line of ``--json`` output is."""
    return json.dumps(summary, separators=(",", ":"), default=str)
