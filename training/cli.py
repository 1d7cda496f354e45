"""The training side's sub-commands of ``liveness``: synth, preprocess, train, train-occlusion, evaluate,
predict, export-onnx."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import InputError
from pipeline.scoring.model import DEFAULT_MODEL_DIR

TRAINING_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        TRAINING_COMMANDS[name] = fn
        return fn

    return register


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    """Register the training sub-commands on the ``liveness`` parser."""
    p = sub.add_parser("synth", help="make labelled synthetic images and session videos")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sessions", type=int, default=40, help="session videos to make")
    p.add_argument("--images-per-class", type=int, default=300, help="still images per class (live, print, replay)")
    p.add_argument("--faces", type=Path, help="folder of extra face photos to use as subjects")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("preprocess", help="crop faces out of labelled images/videos (live/ and spoof/ folders)")
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--size", type=int, default=128, help="crop side in pixels: the model's input size (recorded in crop_spec.json)"
    )
    p.add_argument(
        "--scale", type=float, default=1.6, help="crop scale around the face box (recorded in crop_spec.json)"
    )

    p = sub.add_parser("train", help="train the EfficientNet-B2 liveness classifier on preprocessed crops")
    p.add_argument("--data", type=Path, required=True, help="preprocessed folder (with crops.csv)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--config", type=Path, help="training config YAML (default: configs/train.yaml)")
    p.add_argument("--init-weights", help="local ImageNet weights (.safetensors) to start from")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser(
        "evaluate", help="ISO/IEC 30107-3 evaluation of a checkpoint; threshold chosen on the validation split"
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--data", type=Path, required=True, help="preprocessed folder (with crops.csv)")
    p.add_argument("--out", type=Path, help="where evaluation.json and roc_det.png go (default: the model directory)")
    p.add_argument("--threshold-method", help="eer | bpcerN (e.g. bpcer20); default: the card's method")
    p.add_argument("--seed", type=int, default=0, help="split seed for crops without a split column")
    p.add_argument("--no-card", action="store_true", help="leave the model card as it is")

    p = sub.add_parser(
        "check-data", help="data check: class balance, attack types, image sizes, faces not found, split leakage"
    )
    p.add_argument("--data", type=Path, required=True, help="preprocessed folder (with crops.csv)")
    p.add_argument("--out", type=Path, help="where data_check.md/.png/.json go (default: the data folder)")
    p.add_argument("--seed", type=int, default=0, help="split seed for crops without a split column")

    p = sub.add_parser(
        "train-occlusion", help="train the region-occlusion model on synthetic occluders and write it with its card"
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write (e.g. models/occlusion)")
    p.add_argument(
        "--images", type=int, default=6000, help="frames to render over all splits (each gives 4 region crops)"
    )
    p.add_argument("--sessions", type=int, default=60, help="held-out session videos for the session-level metrics")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of the subject split, the rendering and the training")

    p = sub.add_parser("predict", help="spoof score of one image")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("export-onnx", help="export a checkpoint to ONNX and check parity with torch")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--out", type=Path, required=True)


@_command("synth")
def cmd_synth(args: argparse.Namespace) -> int:
    from training.synth import run_synth

    summary = run_synth(
        args.out, sessions=args.sessions, images_per_class=args.images_per_class, seed=args.seed, faces_dir=args.faces
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


@_command("preprocess")
def cmd_preprocess(args: argparse.Namespace) -> int:
    from pipeline.faces.crop import CropSpec
    from training.preprocess import preprocess

    if not args.raw.is_dir():
        raise InputError(f"--raw {args.raw} is not a directory")
    try:
        crop = CropSpec(size=args.size, scale=args.scale)
    except ValueError as exc:
        raise InputError(f"--size/--scale: {exc}") from exc
    summary = preprocess(args.raw, args.out, crop=crop)
    print(json.dumps(summary, indent=2))
    return 0


@_command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from training.train import load_train_config, train

    overrides = list(args.overrides) + ([f"init_weights={args.init_weights}"] if args.init_weights else [])
    config = load_train_config(args.config, overrides)
    _require_crops(args.data)
    metrics = train(args.data, args.out, config)
    print(json.dumps(metrics, indent=2))
    return 0


def _require_crops(folder: Path) -> None:
    if not (folder / "crops.csv").is_file():
        raise InputError(f"{folder}/crops.csv not found: run `liveness preprocess` first")


@_command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    _require_crops(args.data)
    if args.model.resolve() == DEFAULT_MODEL_DIR and not args.no_card:
        raise InputError("refusing to rewrite the shipped model's card: pass --model DIR (a copy) or --no-card")
    try:
        metrics = evaluate(
            args.model,
            args.data,
            out=args.out,
            method=args.threshold_method,
            seed=args.seed,
            update_card=not args.no_card,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    print(json.dumps(metrics, indent=2))
    return 0


@_command("check-data")
def cmd_check_data(args: argparse.Namespace) -> int:
    from training.data_check import check_data

    _require_crops(args.data)
    report = check_data(args.data, args.out or args.data, seed=args.seed)
    print(report["markdown_path"])
    if report["leakage"]:
        print(f"liveness check-data: {len(report['leakage'])} subject(s) are in more than one split", file=sys.stderr)
        return 1
    return 0


@_command("train-occlusion")
def cmd_train_occlusion(args: argparse.Namespace) -> int:
    from training.occlusion import train_occlusion

    for flag, value, least in (
        ("--images", args.images, 20),
        ("--sessions", args.sessions, 1),
        ("--epochs", args.epochs, 1),
    ):
        if value < least:
            raise InputError(f"{flag} must be at least {least}, got {value}")
    metrics = train_occlusion(args.out, images=args.images, sessions=args.sessions, epochs=args.epochs, seed=args.seed)
    print(json.dumps({k: metrics[k] for k in ("frame", "session", "speed", "data")}, indent=2))
    return 0


@_command("predict")
def cmd_predict(args: argparse.Namespace) -> int:
    from pipeline.config import load_scan_config
    from pipeline.faces.detect import FaceDetector, crop_main_face
    from pipeline.scoring.scorers import TorchScorer
    from pipeline.session.aggregate import decide
    from training.preprocess import read_image_rgb

    image = read_image_rgb(args.image) if args.image.is_file() else None
    if image is None:
        raise InputError(f"{args.image} is not a readable image")
    scorer = TorchScorer(args.model)
    with FaceDetector() as detector:
        dets = detector.detect(image)
    main, crop = crop_main_face(image, dets, scorer.card.crop_spec)
    if main is None:
        print(f"liveness predict: no face found in {args.image}", file=sys.stderr)
        return 1
    assert crop is not None  # crop_main_face gives (None, None) or (index, crop)
    score = float(scorer(crop[None])[0])
    result = {
        "image": str(args.image),
        "spoof_score": round(score, 6),
        "decision": decide(score, scorer.card.threshold, load_scan_config().aggregate.review_band),
        "threshold": scorer.card.threshold,
        "model_version": scorer.card.version,
        "face_box": [round(float(v), 1) for v in dets.boxes[main]],
    }
    print(
        json.dumps(result)
        if args.json
        else f"{args.image}: spoof_score={score:.4f} decision={result['decision']}"
        f" (threshold {scorer.card.threshold:.3f})"
    )
    return 0


@_command("export-onnx")
def cmd_export_onnx(args: argparse.Namespace) -> int:
    from training.export import export_and_check

    report = export_and_check(args.model, args.out)
    print(json.dumps(report, indent=2))
    return 0 if report["parity_ok"] else 1
