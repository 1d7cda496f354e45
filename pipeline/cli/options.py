"""What the scan-like commands share on the command line: exit codes and the validated scan
config from a config file, ``--set`` overrides and the named flags."""

from __future__ import annotations

import argparse
import json

from pipeline.config import ScanConfig, load_scan_config

EXIT_OK, EXIT_CRASH, EXIT_USAGE = 0, 1, 2


def scan_config_from_args(args: argparse.Namespace) -> ScanConfig:
    """The validated config: file, then ``--set`` overrides, then the named flags."""
    overrides = list(getattr(args, "overrides", []))
    named = {
        "model": args.model,
        "limit": getattr(args, "limit", None),
        "ray.address": getattr(args, "ray_address", None),
        "decode.sample_fps": getattr(args, "sample_fps", None),
        "decode.max_frames": getattr(args, "max_frames", None),
        "scoring.batch_size": getattr(args, "batch_size", None),
        "scoring.backend": getattr(args, "backend", None),
    }
    overrides += [f"{k}={json.dumps(v)}" for k, v in named.items() if v is not None]
    return load_scan_config(getattr(args, "config", None), overrides)
