"""The training side's sub-commands of ``liveness``: synth, preprocess, mine, train, train-occlusion,
evaluate, calibrate, predict, export-onnx."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import InputError
from pipeline.scoring.model import DEFAULT_MODEL_DIR
from pipeline.storage import Store

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
        "--size",
        type=int,
        default=128,
        help="crop side in pixels: the model's input size (default 128, the shipped B2's, which training fine-tunes;"
        " in crop_spec.json)",
    )
    p.add_argument(
        "--scale", type=float, default=1.6, help="crop scale around the face box (recorded in crop_spec.json)"
    )
    p.add_argument("--video-fps", type=float, default=2.0, help="frames sampled per second of a video")
    p.add_argument("--max-video-frames", type=int, default=16, help="frames sampled at most per video")

    p = sub.add_parser("train", help="train the EfficientNet-B2 liveness classifier on preprocessed crops")
    p.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="crop folder with crops.csv (from preprocess or mine); repeat it to train on several",
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--config", type=Path, help="training config YAML (default: configs/train.yaml)")
    p.add_argument(
        "--init", help="where the weights start: shipped (default), scratch, a checkpoint or .safetensors weights"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser(
        "evaluate", help="ISO/IEC 30107-3 evaluation of a checkpoint; threshold chosen on the validation split"
    )
    p.add_argument(
        "--model",
        type=Path,
        help="checkpoint directory (default: the shipped one); with --sessions: the b2 model measured"
        " (on the rows it scanned) and whose card records the figures",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="preprocessed folder (with crops.csv): the model's own test split")
    source.add_argument(
        "--images",
        type=Path,
        help="labels CSV (path, label live|spoof, attack, subject, split): every scorer on real images",
    )
    source.add_argument(
        "--sessions",
        type=Path,
        help="labels CSV (session_id, label live|spoof, attack, split), or 'verdicts' (the output's own),"
        " against the scan's sessions",
    )
    p.add_argument(
        "--scan",
        help="with --sessions: the scan's output (else --out is; the figures then go to OUT/evaluations/)",
    )
    p.add_argument(
        "--record",
        metavar="NAME=DIR",
        help="with --images or --sessions: write scorer NAME's figures into the card at DIR (real_evaluation)",
    )
    p.add_argument("--split", help="with --images or --sessions: only the rows of this split")
    p.add_argument("--scorer", action="append", default=[], metavar="NAME=DIR", help="with --images: another scorer")
    p.add_argument(
        "--out",
        type=Path,
        help="where the JSON and ROC/DET plot go (default: the model directory; ./evaluation-images with --images)",
    )
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

    p = sub.add_parser("predict", help="every scorer on many images: one result per image")
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files, folders (recursive) or CSV files with a path column"
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="the b2 scorer's checkpoint")
    p.add_argument(
        "--scorer", action="append", default=[], metavar="NAME=DIR", help="another scorer (a checkpoint with a card)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")

    p = sub.add_parser(
        "mine", help="labelled face crops from committed scans (verdicts first, then the teacher's confident scores)"
    )
    p.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    p.add_argument("--to", type=Path, required=True, help="crop folder to create or extend (what `train --data` reads)")
    p.add_argument("--config", type=Path, help="mining config YAML (default: configs/mine.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p = sub.add_parser(
        "calibrate",
        help="session thresholds (and signal actions) chosen from an output's verdicts for a target BPCER or APCER",
    )
    p.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix, with verdicts")
    p.add_argument("--target", required=True, help="bpcer=RATE (live people rejected) or apcer=RATE (attacks passed)")
    p.add_argument("--config", type=Path, help="the scan config to calibrate (default: configs/scan.yaml)")
    p.add_argument("--model", help="the b2 checkpoint (default: the config's)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--write", type=Path, help="where the calibrated config goes (default: OUT/_calibrations/)")
    p.add_argument("--json", action="store_true", help="print the calibration as JSON")

    p = sub.add_parser(
        "promote",
        help="measure a trained B2 against the reference and their fusion on held-out verdicts; let the best decide",
    )
    p.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix, with verdicts")
    p.add_argument("--model", required=True, help="the trained B2 checkpoint (its card takes the figures)")
    p.add_argument(
        "--data", type=Path, action="append", required=True, help="the mined folder(s) it was trained on (repeatable)"
    )
    p.add_argument("--bpcer", type=float, default=0.05, help="the deployment's BPCER (default 0.05)")
    p.add_argument("--fusion-out", type=Path, help="the fusion scorer's folder to create (default: MODEL-fusion)")
    p.add_argument("--frames-per-session", type=int, default=16, help="faces re-read and scored per session")
    p.add_argument("--config", type=Path, help="the scan config to start from (default: configs/scan.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--write", type=Path, help="where the scan config goes (default: OUT/_calibrations/)")
    p.add_argument("--json", action="store_true", help="print the promotion as JSON")

    p = sub.add_parser("export-onnx", help="export a checkpoint to ONNX and check parity with torch")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    p.add_argument("--out", type=Path, required=True)


@_command("calibrate")
def cmd_calibrate(args: argparse.Namespace) -> int:
    from pipeline.cli.options import scan_config_from_args
    from pipeline.errors import UsageError
    from pipeline.run.execute import resolve_scan_scorers
    from training.measure.calibrate import Target, calibrate, write_calibration

    target = Target.parse(args.target)
    config = scan_config_from_args(args)
    scorers = resolve_scan_scorers(config)
    store = Store(args.out)
    if not store.exists("sessions"):
        raise UsageError(f"--out {args.out} holds no scan output (no sessions/ folder)")
    result = calibrate(args.out, target, config, scorers)
    written = write_calibration(store, result, config, args.write)
    if args.json:
        print(json.dumps(result.to_json() | {"config": written}, indent=2))
        return 0
    print(f"calibration for {result.label}")
    for p in result.points:
        print(
            f"  {p.scorer}: session threshold {p.threshold:.4f} (was {p.was:.4f}):"
            f" APCER {p.apcer:.4f} {p.apcer_ci95}, BPCER {p.bpcer:.4f} {p.bpcer_ci95} (95% bootstrap)"
        )
    for r in result.signals:
        change = r.action if r.action == r.action_before else f"{r.action_before} -> {r.action}"
        rates = f"fired on {r.fired_live} of live ({r.fired_live_ci95}), {r.fired_spoof} of spoof"
        print(f"  rule {r.rule}: {rates}; {change}")
    print(f"wrote {written}: scan with `liveness scan INPUT --out {args.out} --config {written}`")
    return 0


@_command("promote")
def cmd_promote(args: argparse.Namespace) -> int:
    from pipeline.cli.options import scan_config_from_args
    from pipeline.errors import UsageError
    from training.cards.promote import check_promotable, promote, write_promotion

    if not 0 < args.bpcer < 1:
        raise UsageError(f"--bpcer {args.bpcer}: give a rate between 0 and 1 (e.g. 0.05)")
    if args.frames_per_session < 1:
        raise UsageError(f"--frames-per-session {args.frames_per_session}: give at least 1")
    model = Path(args.model)
    fusion_dir = args.fusion_out or model.with_name(f"{model.name}-fusion")
    check_promotable(model, fusion_dir)
    if args.write is not None and args.write.exists():
        raise UsageError(f"--write {args.write} exists: give a new file (nothing was written)")
    config = scan_config_from_args(args)
    store = Store(args.out)
    if not store.exists("sessions"):
        raise UsageError(f"--out {args.out} holds no scan output (no sessions/ folder)")
    result = promote(
        args.out, model, args.data, config, bpcer=args.bpcer, fusion_dir=fusion_dir,
        frames_per_session=args.frames_per_session,
    )  # fmt: skip
    written = write_promotion(result, model, fusion_dir, config, store, args.write)
    if args.json:
        print(json.dumps(result.to_json() | {"config": written, "fusion_out": str(fusion_dir)}, indent=2))
        return 0
    print(f"promotion on {result.data}")
    for name, m in result.measured.items():
        print(
            f"  {name}: ROC-AUC {m['roc_auc']:.4f} {m['roc_auc_ci95']}, APCER at BPCER {result.bpcer:g}:"
            f" {m[result.apcer_key]:.4f} {m['apcer_at_bpcer_ci95']} (95% bootstrap), threshold {m['threshold']:.4f}"
        )
    print(f"{'promoted' if result.promoted else 'not promoted'}: {result.why}")
    print(f"wrote {fusion_dir} (fusion card) and {written}: scan with `liveness scan INPUT --config {written}`")
    return 0


@_command("synth")
def cmd_synth(args: argparse.Namespace) -> int:
    from training.data.synth import run_synth

    summary = run_synth(
        args.out, sessions=args.sessions, images_per_class=args.images_per_class, seed=args.seed, faces_dir=args.faces
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


@_command("preprocess")
def cmd_preprocess(args: argparse.Namespace) -> int:
    from pipeline.faces.crop import CropSpec
    from training.data.preprocess import preprocess

    if not args.raw.is_dir():
        raise InputError(f"--raw {args.raw} is not a directory")
    try:
        crop = CropSpec(size=args.size, scale=args.scale)
    except ValueError as exc:
        raise InputError(f"--size/--scale: {exc}") from exc
    if args.video_fps <= 0 or args.max_video_frames < 1:
        raise InputError(f"--video-fps must be > 0 and --max-video-frames >= 1, got {args.video_fps:g}"
                         f" and {args.max_video_frames}")  # fmt: skip
    summary = preprocess(
        args.raw, args.out, crop=crop, video_fps=args.video_fps, max_video_frames=args.max_video_frames
    )
    print(json.dumps(summary, indent=2))
    return 0


@_command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from training.fit.train import load_train_config, train

    overrides = list(args.overrides) + ([f"init={args.init}"] if args.init else [])
    config = load_train_config(args.config, overrides)
    for folder in args.data:
        _require_crops(folder)
    metrics = train(args.data, args.out, config)
    print(json.dumps(metrics, indent=2))
    return 0


def _require_crops(folder: Path) -> None:
    if not (folder / "crops.csv").is_file():
        raise InputError(f"{folder}/crops.csv not found: run `liveness preprocess` first")


@_command("evaluate")
def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.measure.evaluate import evaluate

    if args.sessions is not None:
        return evaluate_on_sessions(args)
    args.model = args.model or DEFAULT_MODEL_DIR
    if args.images is not None:
        return evaluate_on_images(args)
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


def evaluate_on_images(args: argparse.Namespace) -> int:
    """``evaluate --images``: every registered scorer on labelled images, side by side."""
    from pipeline.config import load_scan_config
    from pipeline.scoring.registry import resolve_scorers
    from training.measure.evaluate_images import evaluate_images
    from training.measure.evaluate_sessions import check_recordable

    record = scorer_options([args.record]) if args.record else {}
    for model_dir in record.values():
        check_recordable(Path(model_dir))
    entries = resolve_scorers({"b2": args.model, "reference": None, **scorer_options(args.scorer)})
    out = args.out or Path("evaluation-images")
    report = evaluate_images(
        args.images, entries, review_band=load_scan_config().aggregate.review_band, split=args.split, out=out
    )
    data = (
        f"{report['live']} live and {report['spoof']} attack images of {report['subjects']} subjects in {args.images}"
        + (f" (split {args.split})" if args.split else "")
    )
    _record(report, record, data)
    print(json.dumps(report, indent=2))
    return 0


def _record(report: dict, record: dict[str, str], data: str) -> None:
    """Write each named scorer's figures of ``report`` into its card as its ``real_evaluation``."""
    from datetime import UTC, datetime

    from pipeline.scoring.model import RealEvaluation
    from training.measure.evaluate_sessions import record_real_evaluation

    for name, model_dir in record.items():
        figures = report["scorers"].get(name)
        if not figures or "skipped" in figures:
            raise InputError(f"--record {name}: no usable {name} scores to record")
        evaluation = RealEvaluation(
            data=data,
            measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
            metrics=figures | {"failure_to_acquire": report["failure_to_acquire"]["rate"]},
        )
        report["recorded"] = str(record_real_evaluation(Path(model_dir), evaluation))


def evaluate_on_sessions(args: argparse.Namespace) -> int:
    """``evaluate --sessions``: every scorer per session against labels; ``--record`` keeps one
    scorer's figures in its card, so that it may decide."""
    from datetime import UTC, datetime

    from pipeline.scoring.registry import read_scorer_card
    from training.measure.evaluate_sessions import check_recordable, evaluate_sessions

    scan = args.scan or (str(args.out) if args.out else None)
    if not scan:
        raise InputError("--sessions needs --out OUT (the scan's output to measure)")
    if not Store(scan).exists("sessions"):
        raise InputError(f"{scan} holds no scan output (no sessions/ folder)")
    record = scorer_options([args.record]) if args.record else {}
    version = None
    if args.model is not None:
        version = read_scorer_card(args.model).version
        if not args.no_card:
            record.setdefault("b2", str(args.model))
    for model_dir in record.values():
        check_recordable(Path(model_dir))
    report = evaluate_sessions(args.sessions, scan, split=args.split, model_version=version,
                               out=args.out if args.scan and args.out else None)  # fmt: skip
    if not (args.scan and args.out):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"evaluations/sessions-{version or 'scan'}-{stamp}.json"
        report["written"] = Store(scan).write_bytes(name, (json.dumps(report, indent=2) + "\n").encode())
    data = (
        f"{report['live']} live and {report['spoof']} attack sessions labelled "
        + ("by the analysts' verdicts" if str(args.sessions) == "verdicts" else f"in {args.sessions}")
        + (f" (split {args.split})" if args.split else "")
        + f", scanned into {scan}"
        + (f" by {version}" if version else "")
    )
    _record(report, record, data)
    print(json.dumps(report, indent=2))
    return 0


@_command("check-data")
def cmd_check_data(args: argparse.Namespace) -> int:
    from training.data.data_check import check_data

    _require_crops(args.data)
    report = check_data(args.data, args.out or args.data, seed=args.seed)
    print(report["markdown_path"])
    if report["leakage"]:
        print(f"liveness check-data: {len(report['leakage'])} subject(s) are in more than one split", file=sys.stderr)
        return 1
    return 0


@_command("train-occlusion")
def cmd_train_occlusion(args: argparse.Namespace) -> int:
    from training.fit.occlusion import train_occlusion

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
    from pipeline.scoring.registry import resolve_scorers
    from training.measure.predict import image_paths, predict_images

    entries = resolve_scorers({"b2": args.model, "reference": None, **scorer_options(args.scorer)})
    paths = image_paths(args.paths)
    if not paths:
        raise InputError(f"no image found in {' '.join(args.paths)}")
    scan = load_scan_config()
    deciders = scan.decision.scorers
    if deciders is not None:  # the scan's deciding scorers, where this run has them
        deciders = [name for name in deciders if name in {e.name for e in entries}] or None
    for prediction in predict_images(paths, entries, review_band=scan.aggregate.review_band, deciders=deciders):
        if args.json:
            print(json.dumps(prediction.to_json()), flush=True)
        elif prediction.error or not prediction.face_found:
            print(f"{prediction.image}: {prediction.error or 'no face found'}")
        else:
            scores = ", ".join(f"{name} {score:.4f}" for name, score in prediction.scores.items())
            print(f"{prediction.image}: {prediction.decision} (spoof_score {prediction.spoof_score}; {scores})")
    return 0


def scorer_options(options: list[str]) -> dict[str, str]:
    """``NAME=DIR`` options as a name -> checkpoint map."""
    out = {}
    for option in options:
        name, sep, path = option.partition("=")
        if not sep or not name or not path:
            raise InputError(f"--scorer {option!r} must look like NAME=DIR")
        out[name] = path
    return out


@_command("mine")
def cmd_mine(args: argparse.Namespace) -> int:
    from pipeline.config import load_scan_config
    from training.data.mine import load_mine_config, mine

    config = load_mine_config(args.config, args.overrides)
    report = mine(args.out, args.to, config, max_pixels=load_scan_config().decode.max_pixels)
    print(report.to_json(), end="")
    return 0


@_command("export-onnx")
def cmd_export_onnx(args: argparse.Namespace) -> int:
    from training.fit.export import export_and_check

    report = export_and_check(args.model, args.out)
    print(json.dumps(report, indent=2))
    return 0 if report["parity_ok"] else 1
