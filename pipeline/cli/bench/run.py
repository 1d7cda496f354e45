"""One ``liveness bench`` run: every measurement, the figures derived from them, and the JSON line."""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from pipeline.cli.bench.naive import NAIVE_SESSIONS, measure_naive
from pipeline.cli.bench.scan import measure_scan
from pipeline.cli.bench.sessions import make_sessions
from pipeline.cli.bench.stages import (
    B2_INPUT_SIZES,
    StageRun,
    bench_scorers,
    measure_b2_input_sizes,
    measure_stages_on_all_cores,
    usable_cores,
)
from pipeline.config import ScanConfig
from pipeline.scoring.model import ModelCard


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
        cores = usable_cores()
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
    stages = measure_stages_on_all_cores(batch, config, checkpoint, usable_cores(), gpu_scorer=gpu_scorer)
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


def to_json(summary: dict) -> str:
    """The one-line JSON object the last line of ``--json`` output is."""
    return json.dumps(summary, separators=(",", ":"), default=str)
