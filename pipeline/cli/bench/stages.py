"""Each stage of the scan alone, per second of video: decoding, the per-frame path's stages,
the scorers (and the b2 at other input sizes), measured on every core at once."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import ScanConfig
from pipeline.run.progress import Progress
from pipeline.scoring.registry import ScorerEntry, Scorers, crop_specs, scan_scorers
from pipeline.session.aggregate import refinement_crops, worth_refining
from pipeline.session.frame_path import FramePath, SessionFrames, StageCost
from pipeline.session.records import FrameRecords
from pipeline.signals.collector import SessionVerdicts
from pipeline.video.decode import VideoReader
from pipeline.video.sources import Session

STAGE_CHUNK = 4  # sessions per stage-measurement task (progress moves per chunk)
B2_INPUT_SIZES = (128, 260)  # the shipped input size and EfficientNet-B2's native one (the seed recipe)


class _Clock:
    """CPU (all threads of this process) and wall time of a block."""

    def __enter__(self) -> _Clock:
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


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
    and the faces beside them in batches of the scan's size, then the unscheduled faces of the
    sessions whose score lies near a threshold. Returns the cost (items: faces scored), the sessions refined and the
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
    first = _score_batches(scorers, _stack([s.first_round_crops() for s in sessions]), batch, cost)
    refined, start, keys = [], 0, refinement_crops(entries, config)
    for s in sessions:
        n = int(s.scheduled.sum()) + len(s.other_rows)
        scheduled, _ = s.split_first_round({name: v[start : start + n] for name, v in first.items()})
        if worth_refining(s.scheduled, scheduled, entries, config):
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


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
