"""``liveness bench``: how fast each stage is on this machine, how close the scan gets to
the bound they set, and how it compares with the naive loop of the seed.

On generated sessions (the scan's own sampling settings), in one run:

1. each stage alone: decode (PyAV, sampled frames), face detection (MediaPipe), the
   face-mesh signals (landmarks, similarity, occlusion), and the scorer (configured backend
   and batch size); CPU seconds per scored crop for each. One process per core measures its
   share of the sessions, all at once: a core does less work per second when every core is
   busy (measured here: 10% less than with the other core idle), and the bound assumes
   every core busy;
2. the bound: what the machine could do with the stages perfectly overlapped and no
   overhead, from their own costs: CPU cores / the sum of CPU seconds per crop (with a GPU
   scorer: the smaller of its rate and the CPU stages' rate);
3. the scan end to end (``liveness scan`` in a child process: Ray, actors, batching,
   Parquet), its crops/s and sessions/s from Ray being up to the last commit, and its peak
   memory (driver and Ray processes; RSS summed, and PSS: shared pages counted once);
4. the naive loop over the same sessions and sampled frames: OpenCV decode of every frame,
   MediaPipe on each sampled frame, eager torch on one crop at a time, no Ray.

``pipeline_efficiency`` = scan crops/s over the bound: what Ray, batching, queues and
stalls cost, start-up included; ``steady_efficiency`` is the same between the first and the
last finished session, once workers and actors are warm. ``speedup_vs_naive`` = scan
sessions/s over the naive loop's.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from pipeline.config import ScanConfig
from pipeline.faces.detect import FaceDetector, crop_main_face
from pipeline.scoring.model import ModelCard
from pipeline.scoring.registry import ScorerEntry, Scorers, crop_specs, scan_scorers
from pipeline.session.frame_path import FramePath, SessionFrames, StageCost
from pipeline.video.decode import VideoReader, _TimeSampler
from pipeline.video.sources import Session

BENCH_KINDS = ("live", "print", "replay", "live", "swap", "occluded")


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
    """``n`` synthetic KYC-like sessions (live, print, replay, swap, occluded in turn) as H.264 files."""
    from training.face_sources import load_face_sources
    from training.synth import random_spec, render_session_frames
    from training.video_writer import write_video

    folder.mkdir(parents=True, exist_ok=True)
    sources = load_face_sources()
    ids = [s.subject_id for s in sources]
    rng = np.random.default_rng(seed)
    sessions = []
    for i in range(n):
        path = folder / f"bench{i:04d}.mp4"
        if not path.is_file():
            kind = BENCH_KINDS[i % len(BENCH_KINDS)]
            subjects = [ids[j] for j in rng.choice(len(ids), 2, replace=False)]
            spec = random_spec(f"bench{i:04d}", kind, subjects, rng, duration_s=seconds, fps=fps, size=size)
            write_video(path, render_session_frames(spec, sources, upright=True), fps=fps)
        sessions.append(Session(session_id=path.stem, uri=str(path.resolve())))
    return sessions


@dataclass
class StageRun:
    """What :func:`measure_stages` measured: the stages' costs, the faces cropped, the scorers'
    backends, and the crops themselves (by crop key) when they were left for another process to score."""

    stages: dict[str, StageCost]
    crops: int
    backend: str = ""
    unscored: dict[str, np.ndarray] | None = None


def measure_stages(sessions: list[Session], config: ScanConfig, checkpoint: Path, score: bool = True) -> StageRun:
    """Each stage alone over every session: decoding all of a session's sampled frames, then
    the scan's own per-frame path over them (timed per stage), cutting every scorer's crops.
    ``score=False`` leaves the scorers out and returns the crops to be scored elsewhere."""
    entries = bench_scorers(config, checkpoint)
    specs = crop_specs(entries)
    cache = config.scoring.onnx_cache
    path = FramePath(
        specs[0], config.detect, config.signals, extra_crops=specs[1:], identity=config.identity,
        fingerprint_hz=config.links.hash_hz, cache_dir=cache, timed=True,
    )  # fmt: skip
    decode = StageCost("decode")
    crops: dict[str, list[np.ndarray]] = {spec.key: [] for spec in specs}
    for session in sessions:
        result, decode_cost = stage_session(path, session, config)
        decode.add(*decode_cost)
        for key, values in result.scorer_crops.items():
            crops[key].append(values)
    stages = {"decode": decode, **{name: path.costs[name] for name in ("detect", "signals", "identity")}}
    empty = {spec.key: np.zeros((0, spec.size, spec.size, 3), np.uint8) for spec in specs}
    stacked = {key: np.concatenate(parts) if parts else empty[key] for key, parts in crops.items()}
    faces = len(stacked[specs[0].key])
    if not score:
        return StageRun(stages, faces, unscored=stacked)
    stages["score"], backend = measure_scorer(stacked, config, checkpoint)
    return StageRun(stages, faces, backend)


def bench_scorers(config: ScanConfig, checkpoint: Path) -> list[ScorerEntry]:
    """The scan's scorers for this config, with the benchmarked b2 checkpoint."""
    return scan_scorers(checkpoint, {name: s.model for name, s in config.scorers.items()})


def stage_session(
    path: FramePath, session: Session, config: ScanConfig
) -> tuple[SessionFrames, tuple[float, float, int]]:
    """One session as the stage measurement runs it: every sampled frame decoded first (the
    decode cost apart: CPU s, wall s, frames), then the scan's per-frame path over them."""
    with (
        _Clock() as clock,
        VideoReader(session.uri, sample_fps=config.decode.sample_fps, max_frames=config.decode.max_frames) as video,
    ):
        frames = list(video.sampled())
    return path.run(frames), (clock.cpu, clock.wall, len(frames))


def measure_scorer(crops: dict[str, np.ndarray], config: ScanConfig, checkpoint: Path) -> tuple[StageCost, str]:
    """The scan's scorers over the faces of ``crops`` in batches of the configured size, after
    one warm-up batch (as the scoring actor runs them)."""
    scorers = Scorers(
        bench_scorers(config, checkpoint),
        backend=config.scoring.backend,
        threads=config.scoring.threads or max(1, int(config.scoring.num_cpus)),
        cache_dir=config.scoring.onnx_cache,
    )
    batch = config.scoring.batch_size
    n = len(next(iter(crops.values())))
    scorers({key: v[:batch] for key, v in crops.items()})  # warm-up: graph optimisation and first allocations
    cost = StageCost("score")
    with _Clock() as clock:
        for i in range(0, n, batch):
            scorers({key: v[i : i + batch] for key, v in crops.items()})
    cost.add(clock.cpu, clock.wall, n)
    return cost, ", ".join(f"{name}: {b}" for name, b in scorers.backends().items())


B2_INPUT_SIZES = (128, 260)  # the shipped input size and EfficientNet-B2's native one (the seed recipe)


def measure_b2_input_sizes(config: ScanConfig, checkpoint: Path, n: int = 64) -> dict:
    """The b2 scorer's cost per crop at each of :data:`B2_INPUT_SIZES`, on the scan's backend
    and batch size: the same weights with the card's input size changed (the network pools
    globally, so any size runs), over ``n`` random crops each, in one run. The rest of the
    scan's per-crop cost does not depend on the input size."""
    from pipeline.checkpoint import CARD_FILE

    b2_only = config.model_copy(update={"scorers": {}})
    rng = np.random.default_rng(0)
    cost_ms = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in B2_INPUT_SIZES:
            copy = Path(tmp) / f"b2-{size}"
            copy.mkdir()
            for item in checkpoint.iterdir():
                if item.is_file():
                    (copy / item.name).symlink_to(item.resolve())
            card = json.loads((checkpoint / CARD_FILE).read_text()) | {"input_size": size}
            (copy / CARD_FILE).unlink()
            (copy / CARD_FILE).write_text(json.dumps(card))
            [spec] = crop_specs(bench_scorers(b2_only, copy))
            crops = {spec.key: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)}
            cost, _ = measure_scorer(crops, b2_only, copy)
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
) -> tuple[dict[str, StageCost], int, str]:
    """:func:`measure_stages` in ``processes`` processes at once, each on every
    ``processes``-th session; their costs summed (a CPU stage's rate is then per core).
    A GPU scorer is measured once, here, on all the crops: the scan has one per GPU."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [share for share in (sessions[i::processes] for i in range(processes)) if share]
    n = len(shares)
    if n < 2:
        runs = [measure_stages(sessions, config, checkpoint, not gpu_scorer)]
    else:
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs = list(pool.map(measure_stages, shares, [config] * n, [checkpoint] * n, [not gpu_scorer] * n))
    total = {name: StageCost(name) for name in runs[0].stages}
    for run in runs:
        for name, cost in run.stages.items():
            total[name].add(cost.cpu_s, cost.wall_s, cost.items)
    backend = runs[0].backend
    if gpu_scorer:
        unscored = [run.unscored for run in runs if run.unscored is not None]
        keys = unscored[0].keys()
        total["score"], backend = measure_scorer(
            {k: np.concatenate([u[k] for u in unscored]) for k in keys}, config, checkpoint
        )
    return total, sum(run.crops for run in runs), backend


class PeakMemory:
    """Samples, in a thread, the memory of a process and all its descendants (Ray's workers):
    the summed RSS (shared pages counted in every process) every ``interval_s``, and the
    summed PSS (shared pages split between the processes that map them: what the tree really
    holds) every ``pss_interval_s``. PSS costs the kernel a walk of every page table (67 ms of
    CPU per sample of a scan's processes, measured): sampled as often as RSS it would take a
    sixth of a 2-core machine from the scan being measured."""

    def __init__(self, pid: int, interval_s: float = 0.2, pss_interval_s: float = 3.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_interval_s = pss_interval_s
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

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

    def __enter__(self) -> PeakMemory:
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
    temporary output: throughput from its run summary (Ray's start-up apart), peak memory
    of the whole process tree."""
    import subprocess
    import sys

    import yaml

    with tempfile.TemporaryDirectory(prefix="liveness-bench-") as tmp:
        manifest = Path(tmp) / "sessions.csv"
        manifest.write_text("session_id,uri\n" + "".join(f"{s.session_id},{s.uri}\n" for s in sessions))
        config_file = Path(tmp) / "scan.yaml"
        config_file.write_text(yaml.safe_dump(config.model_dump(mode="json") | {"model": str(checkpoint)}))
        out = Path(tmp) / "out"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "scan",
                str(manifest),
                "--out",
                str(out),
                "--config",
                str(config_file),
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        with PeakMemory(proc.pid) as memory:
            _, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the benchmark scan failed: {err.decode()[-2000:]}")
        [run] = [json.loads(p.read_text()) for p in (out / "_runs").glob("*.json")]
    return {
        "wall_s": run["wall_s"],
        "startup_s": run["startup_s"],
        "sessions": run["sessions"],
        "crops": run["crops"],
        "backend": run["backend"],
        "first_session_s": run["first_session_s"],
        "steady_crops_per_s": run["steady_crops_per_s"],
        "by_status": run["by_status"],
        "peak_rss_mb": memory.peak_rss / 2**20,
        "peak_pss_mb": memory.peak_pss / 2**20,
    }


def measure_naive(sessions: list[Session], config: ScanConfig, checkpoint: Path, card: ModelCard) -> dict:
    """The seed-style loop: OpenCV decodes every frame, MediaPipe on each sampled frame, eager torch per crop."""
    import cv2
    import torch

    from pipeline.scoring.model import load_checkpoint, preprocess

    model, _ = load_checkpoint(checkpoint)
    model.eval()
    detector = FaceDetector(model_selection=config.detect.model_selection, min_confidence=config.detect.min_confidence)
    crops = 0
    started = time.perf_counter()
    for session in sessions:
        capture = cv2.VideoCapture(session.uri)
        sampler, kept = _TimeSampler(config.decode.sample_fps), 0
        t0 = None
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
            _, crop = crop_main_face(rgb, detector.detect(rgb), card.crop_spec)
            if crop is not None:
                with torch.inference_mode():
                    torch.softmax(model(torch.from_numpy(preprocess(crop[None], card))), dim=1)
                crops += 1
        capture.release()
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
    stages: dict[str, StageCost]
    crops: int
    scan: dict
    naive: dict | None
    scorer_backend: str
    gpu_scorer: bool
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        cores = _cores()
        per_crop = {name: s.cpu_s / max(self.crops, 1) for name, s in self.stages.items()}
        cpu_stages = [n for n in per_crop if not (self.gpu_scorer and n == "score")]
        cpu_bound = cores / max(sum(per_crop[n] for n in cpu_stages), 1e-12)
        scorer_rate = self.stages["score"].items / max(self.stages["score"].wall_s, 1e-12)
        bound = min(scorer_rate, cpu_bound) if self.gpu_scorer else cpu_bound
        pipeline_rate = self.scan["crops"] / max(self.scan["wall_s"], 1e-12)
        scan_sessions_per_s = self.scan["sessions"] / max(self.scan["wall_s"], 1e-12)
        stage_rates = {
            f"{n}_per_s": round(s.items / max(s.wall_s, 1e-12), 1)
            for n, s in self.stages.items()
            if n not in ("signals", "identity")
        }
        identity = self.stages.get("identity")
        slowest = max(per_crop, key=per_crop.__getitem__)
        return {
            "scorer_crops_per_s": round(scorer_rate, 1),
            "pipeline_crops_per_s": round(pipeline_rate, 2),
            "bound_crops_per_s": round(bound, 2),
            "pipeline_efficiency": round(pipeline_rate / bound, 3),
            "steady_crops_per_s": round(self.scan["steady_crops_per_s"], 2),
            "steady_efficiency": round(self.scan["steady_crops_per_s"] / bound, 3),
            "first_session_s": round(self.scan["first_session_s"], 2),
            "speedup_vs_naive": round(scan_sessions_per_s / self.naive["sessions_per_s"], 2) if self.naive else None,
            "peak_rss_mb": round(self.scan["peak_rss_mb"], 1),
            "peak_pss_mb": round(self.scan["peak_pss_mb"], 1),
            "ray_startup_s": round(self.scan["startup_s"], 2),
            "scan_sessions_per_s": round(scan_sessions_per_s, 3),
            "naive_sessions_per_s": round(self.naive["sessions_per_s"], 3) if self.naive else None,
            "decode_fps": stage_rates["decode_per_s"],
            "detect_fps": stage_rates["detect_per_s"],
            "signals_fps": round(self.stages["signals"].items / max(self.stages["signals"].wall_s, 1e-12), 1),
            "cpu_ms_per_crop": {n: round(1e3 * v, 2) for n, v in per_crop.items()},
            "identity_ms_per_embedding": round(1e3 * identity.cpu_s / identity.items, 1)
            if identity is not None and identity.items
            else None,
            "embeddings_per_session": round(identity.items / max(self.scan["sessions"], 1), 2)
            if identity is not None
            else None,
            "bottleneck": slowest,
            "bottleneck_share": round(per_crop[slowest] / sum(per_crop.values()), 3),
            "crops": self.crops,
            "sessions": self.scan["sessions"],
            "scan_wall_s": round(self.scan["wall_s"], 2),
            "machine": {
                "cores": cores,
                "cpu": platform.processor() or platform.machine(),
                "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
                "gpu": self.extra.get("gpu"),
            },
            "backend": self.scorer_backend,
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
) -> BenchResult:
    """Generate the sessions (once; reused from ``work_dir``), then measure everything in one run."""
    import torch

    batch = make_sessions(
        work_dir / f"{sessions}x{seconds:g}s-{size[0]}x{size[1]}-{fps:g}fps",
        sessions,
        seconds=seconds,
        fps=fps,
        size=size,
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    gpu_scorer = gpu is not None and config.scoring.backend in ("auto", "torch")
    stages, crops, backend = measure_stages_on_all_cores(batch, config, checkpoint, _cores(), gpu_scorer=gpu_scorer)
    scan = measure_scan(batch, config, checkpoint)
    naive_result = measure_naive(batch, config, checkpoint, card) if naive else None
    settings = {
        "sessions": sessions,
        "seconds": seconds,
        "fps": fps,
        "size": f"{size[0]}x{size[1]}",
        "sample_fps": config.decode.sample_fps,
        "max_frames": config.decode.max_frames,
        "batch_size": config.scoring.batch_size,
        "input_size": card.input_size,
        "signals": config.signals.enabled,
        "model_version": card.version,
        "scorers": [e.name for e in bench_scorers(config, checkpoint)],
    }
    return BenchResult(
        settings=settings,
        stages=stages,
        crops=crops,
        scan=scan,
        naive=naive_result,
        scorer_backend=backend,
        gpu_scorer=gpu_scorer,
        extra={"gpu": gpu, **measure_b2_input_sizes(config, checkpoint)},
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
    with PeakMemory(proc.pid, interval_s=0.05, pss_interval_s=1e9) as memory:
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
