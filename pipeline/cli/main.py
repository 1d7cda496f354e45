"""The ``liveness`` command line: one entry point, one sub-command per job.

Exit status: 0 when a run finished (failed sessions are rows, not errors), 2 for bad
usage, config, input or model (a message names the problem; nothing is written),
1 only for a crash.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

from pipeline.cli.options import EXIT_OK, EXIT_USAGE, scan_config_from_args
from pipeline.errors import LivenessError, QueryError, ScanInterrupted, UsageError
from pipeline.run.execute import execute_scan, resolve_model
from pipeline.schema import VIEWS
from pipeline.storage import Store

log = logging.getLogger("liveness")


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # which CPU build FAISS loads is no operator's concern


def _add_scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, help="output directory or s3:// prefix (sessions/ and frames/ Parquet datasets)"
    )
    p.add_argument("--model", help="checkpoint directory (default: the shipped models/default)")
    p.add_argument("--config", type=Path, help="scan config YAML (default: configs/scan.yaml)")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting Ray locally")
    p.add_argument("--limit", type=int, help="scan at most this many sessions")
    p.add_argument("--sample-fps", type=float, help="frames sampled per second of video (decode.sample_fps)")
    p.add_argument("--max-frames", type=int, help="cap of sampled frames per session (decode.max_frames)")
    p.add_argument("--batch-size", type=int, help="crops per scoring batch (scoring.batch_size)")
    p.add_argument("--backend", choices=["auto", "onnx", "torch"], help="scoring backend (scoring.backend)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set aggregate.method=median",
    )
    p.add_argument(
        "--rescan", action="store_true", help="scan every input again, even those the ledger says are done (new rows)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be scanned and what is skipped, and why; write nothing"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-23") from None


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1280x720") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be 16..8192")
    return w, h


def _counts(text: str) -> list[int]:
    try:
        counts = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of session counts like 10,100") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be >= 1")
    return counts


def version_text() -> str:
    """The package version and the shipped models' versions (a card that cannot be read says so)."""
    from importlib.metadata import version

    from pipeline.faces.identity import IdentityCard
    from pipeline.scoring.model import DEFAULT_MODEL_DIR, read_card
    from pipeline.scoring.onnx_model import DEFAULT_REFERENCE_DIR, read_onnx_card
    from pipeline.signals.occlusion import DEFAULT_OCCLUSION_DIR, read_occlusion_card

    readers: dict[str, Callable[[], str]] = {
        "b2": lambda: read_card(DEFAULT_MODEL_DIR).version,
        "reference": lambda: read_onnx_card(DEFAULT_REFERENCE_DIR).version,
        "occlusion": lambda: read_occlusion_card(DEFAULT_OCCLUSION_DIR).version,
        "identity": lambda: IdentityCard.load().version,
    }
    models = []
    for name, read in readers.items():
        try:
            models.append(f"  {name}: {read()}")
        except LivenessError as exc:
            models.append(f"  {name}: unreadable ({exc})")
    return "\n".join([f"liveness {version('liveness')}", "shipped models:", *models])


class _Version(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and the shipped models' and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveness", description="Find spoofed faces in KYC selfie videos.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = sub.add_parser("scan", help="scan videos, folders, globs or manifests into Parquet reports")
    scan.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video file, directory (recursive), glob, or manifest (.csv/.parquet with session_id, uri)",
    )
    _add_scan_options(scan)

    demo = sub.add_parser("demo", help="make sample sessions, scan them with the shipped model, print a summary")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("liveness-demo"),
        help="where the sample videos and reports go (default: ./liveness-demo)",
    )
    demo.add_argument("--model", help="checkpoint directory (default: the shipped models/default)")
    demo.add_argument("--quiet", action="store_true")

    query = sub.add_parser(
        "query",
        help="SQL over a scan's output: DuckDB views " + ", ".join(VIEWS),
    )
    query.add_argument("sql", nargs="?", help='e.g. "select decision, count(*) from sessions group by 1"')
    query.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    query.add_argument(
        "--format", choices=["table", "csv", "json", "parquet"], help="default: table on a terminal, csv otherwise"
    )
    query.add_argument(
        "--output", type=Path, help="write the result to this file instead of standard output (needed for parquet)"
    )
    query.add_argument(
        "--allow-external",
        action="store_true",
        help="let the SQL read and write files, install extensions and reach the network (off: read-only)",
    )
    query.add_argument(
        "--dictionary",
        action="store_true",
        help="print the data dictionary (every column, its unit and what null means) and exit",
    )

    links = sub.add_parser(
        "links",
        help="link the sessions of runs not yet linked: same_face and same_video over the whole output",
    )
    links.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    links.add_argument("--config", type=Path, help="scan config YAML (its identity and links sections)")
    links.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    links.add_argument("--quiet", action="store_true")

    verdicts = sub.add_parser("verdicts", help="analysts' verdicts on sessions (spoof / live / unsure)")
    verdicts_sub = verdicts.add_subparsers(dest="verdicts_command", required=True, metavar="ACTION")
    add = verdicts_sub.add_parser(
        "add",
        help="commit a CSV of verdicts (session_id, verdict, attack, note, analyst): all rows or, on a bad one, none",
    )
    add.add_argument("file", type=Path, metavar="FILE", help="the CSV (e.g. the report's 'Download verdicts')")
    add.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    add.add_argument("--analyst", help="who gave the verdicts, for rows whose analyst column is empty")

    diff = sub.add_parser(
        "diff", help="what a new model changes: sessions whose decision or score changed between two model versions"
    )
    diff.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    diff.add_argument("--from", dest="from_version", help="the old model version (default: the second most recent)")
    diff.add_argument("--to", dest="to_version", help="the new model version (default: the most recent)")
    diff.add_argument(
        "--min-change", type=float, default=0.1, help="list a session whose score moved this much (default 0.1)"
    )
    diff.add_argument("--format", choices=["table", "csv", "json"], help="default: table on a terminal, csv otherwise")
    diff.add_argument("--output", type=Path, help="write to this file instead of standard output")

    report = sub.add_parser(
        "report", help="one self-contained HTML report of a day's sessions: ranked, with timelines and evidence"
    )
    report.add_argument("--out", required=True, help="the scan's output directory or s3:// prefix")
    report.add_argument("--date", type=_date, help="scan date YYYY-MM-DD (default: the latest)")
    report.add_argument("--top", type=int, default=20, help="flagged sessions shown in detail (default 20)")
    report.add_argument("--output", help="where to write the HTML (default: OUT/report-<date>.html)")

    bench = sub.add_parser(
        "bench", help="measure each stage, the scan end to end and a naive loop on generated sessions"
    )
    bench.add_argument(
        "--sessions",
        type=int,
        default=120,
        help="generated sessions (default 120; the fixed start-up of the workers weighs less the more there are)",
    )
    bench.add_argument("--seconds", type=float, default=4.0, help="length of each session (default 4 s)")
    bench.add_argument("--fps", type=float, default=30.0, help="frame rate of the generated videos (default 30)")
    bench.add_argument(
        "--size", type=_size, default=(1280, 720), help="frame size WxH of the generated videos (default 1280x720)"
    )
    bench.add_argument("--no-naive", action="store_true", help="skip the naive baseline loop")
    bench.add_argument(
        "--naive-sessions",
        type=int,
        default=12,
        help="sessions the naive loop runs (default 12: it takes seconds per session; its rate is per session)",
    )
    bench.add_argument(
        "--b2-input",
        type=int,
        metavar="PX",
        help="benchmark with the b2 at this input size (the same weights, for timing: e.g. 260, the seed's size)",
    )
    bench.add_argument(
        "--memory", type=_counts, help="also measure peak memory of scans over these session counts, e.g. 10,100"
    )
    bench.add_argument(
        "--work-dir",
        type=Path,
        default=Path("~/.cache/liveness/bench").expanduser(),
        help="where generated sessions are kept for reuse",
    )
    bench.add_argument("--json", action="store_true", help="end with one line of JSON holding every figure")
    bench.add_argument(
        "--links",
        type=_counts,
        metavar="NEW,STORED",
        help="only the 1:N same-face search: NEW random templates against STORED ones (e.g. 10000,1000000)",
    )
    bench.add_argument("--model", help="checkpoint directory (default: the shipped models/default)")
    bench.add_argument("--config", type=Path, help="scan config YAML (default: configs/scan.yaml)")
    bench.add_argument("--batch-size", type=int, help="crops per scoring batch (scoring.batch_size)")
    bench.add_argument("--backend", choices=["auto", "onnx", "torch"], help="scoring backend (scoring.backend)")
    bench.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override any scan config key"
    )

    from training.cli import add_training_commands

    add_training_commands(sub)
    return parser


def cmd_scan(args: argparse.Namespace) -> int:
    config = scan_config_from_args(args)
    execute_scan(args.inputs, config, args.out, quiet=args.quiet, rescan=args.rescan, dry_run=args.dry_run)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from pipeline.reports.query import run_query
    from pipeline.reports.results import write_result

    if args.dictionary:
        from pipeline.reports.dictionary import render_markdown

        print(render_markdown(), end="")
        return EXIT_OK
    if not args.sql:
        raise UsageError("give a SQL query (or --dictionary); the views are " + ", ".join(VIEWS))
    fmt = args.format or ("table" if args.output is None and sys.stdout.isatty() else "csv")
    if fmt == "parquet" and args.output is None:
        raise UsageError("--format parquet needs --output FILE")
    _require_scan_output(args.out)
    try:
        table = run_query(args.out, args.sql, allow_external=args.allow_external)
    except QueryError as exc:
        raise UsageError(f"query failed: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"--out {args.out}: {exc}") from exc
    try:
        write_result(table, fmt, args.output)
    except OSError as exc:
        raise UsageError(f"--output {args.output}: {exc.strerror or exc} (nothing was written)") from exc
    return EXIT_OK


def cmd_links(args: argparse.Namespace) -> int:
    from pipeline.links.archive import link_pending
    from pipeline.session.frame_path import identity_card

    config = scan_config_from_args(argparse.Namespace(model=None, config=args.config, overrides=args.overrides))
    _require_scan_output(args.out)
    store = Store(args.out)
    threshold = config.links.same_face_distance or identity_card(config.identity.model).threshold
    done = link_pending(store, config.links, threshold, config.input.applicant_column)
    if args.quiet:
        return EXIT_OK
    if not done.runs:
        print(f"every run in {store.display()} is linked already; nothing to do")
        return EXIT_OK
    print(
        f"linked {done.templates} templates and {done.fingerprints} fingerprints of {len(done.runs)} run(s): "
        f"{done.links} new links" + (f" in {done.file}" if done.file else "")
    )
    return EXIT_OK


def cmd_verdicts(args: argparse.Namespace) -> int:
    from pipeline.reports.verdicts import add_verdicts

    _require_scan_output(args.out)
    commit = add_verdicts(args.out, args.file, analyst=args.analyst)
    counts = ", ".join(f"{n} {name}" for name, n in commit.by_verdict.items() if n)
    print(f"committed {commit.verdicts} verdict(s) ({counts}) to {commit.file}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    import json

    from pipeline.atomic import write_aside
    from pipeline.reports.diff import model_diff, versions
    from pipeline.reports.query import connect
    from pipeline.reports.results import write_result

    if not 0 <= args.min_change <= 1:
        raise UsageError(f"--min-change must be between 0 and 1, got {args.min_change}")
    _require_scan_output(args.out)
    con = connect(args.out)
    known = versions(con)
    if (args.from_version is None or args.to_version is None) and len(known) < 2:
        raise UsageError(f"{args.out} holds sessions of {len(known)} model version(s): a diff needs two")
    diff = model_diff(con, args.from_version or known[1], args.to_version or known[0], min_change=args.min_change)
    fmt = args.format or ("table" if args.output is None and sys.stdout.isatty() else "csv")
    try:
        if fmt == "json":
            text = json.dumps(diff.to_json(), default=str, indent=1) + "\n"
            if args.output is None:
                print(text, end="")
            else:
                write_aside(args.output, lambda tmp: tmp.write_text(text))
        elif fmt == "csv":
            write_result(diff.changed, "csv", args.output)
        else:
            print(
                f"{diff.from_version} -> {diff.to_version}: {diff.common} session(s) scanned by both"
                f" ({diff.only_from} only by the first, {diff.only_to} only by the second);"
                f" {diff.changed.num_rows} changed (decision, or score by {args.min_change:g} or more)"
            )
            write_result(diff.transitions, "table", None)
            columns = ["session_id", "from_decision", "to_decision", "from_score", "to_score", "score_change"]
            write_result(diff.changed.select(columns), "table", args.output)
    except OSError as exc:
        raise UsageError(f"--output {args.output}: {exc.strerror or exc} (nothing was written)") from exc
    return EXIT_OK


def _require_scan_output(out: str) -> None:
    try:
        if not Store(out).exists("sessions"):
            raise UsageError(f"--out {out} holds no scan output (no sessions/ folder)")
    except ValueError as exc:
        raise UsageError(f"--out {out}: {exc}") from exc


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline.reports.report import write_report

    if args.top < 0:
        raise UsageError("--top must be >= 0")
    _require_scan_output(args.out)
    try:
        path = write_report(args.out, day=args.date, top=args.top, output=args.output)
    except OSError as exc:
        raise UsageError(f"the report could not be written: {exc.strerror or exc} (nothing was written)") from exc
    print(path)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.cli.bench.run import run_bench, to_json
    from pipeline.cli.bench.scan import memory_profile
    from pipeline.cli.bench.stages import resized_b2
    from pipeline.scoring.model import read_card

    if args.sessions < 1 or args.seconds <= 0 or args.fps <= 0:
        raise UsageError("--sessions, --seconds and --fps must be positive")
    if args.links is not None:
        from pipeline.cli.bench.links import measure_link_search

        if len(args.links) != 2:
            raise UsageError("--links takes two counts: NEW,STORED (e.g. 10000,1000000)")
        search = measure_link_search(*args.links)
        print(
            f"same-face search: {search['new']} new templates against {search['stored']} stored in"
            f" {search['search_s']} s (index built in {search['index_build_s']} s), peak memory"
            f" {search['peak_rss_mb']} MB; {search['planted_found']} of {search['planted']} planted matches found"
        )
        if args.json:
            print(json.dumps(search))
        return EXIT_OK
    if args.naive_sessions < 1:
        raise UsageError(f"--naive-sessions must be at least 1, got {args.naive_sessions}")
    if args.b2_input is not None and not 32 <= args.b2_input <= 1024:
        raise UsageError(f"--b2-input must lie in 32..1024 pixels, got {args.b2_input}")
    config = scan_config_from_args(args)
    checkpoint, card = resolve_model(config)
    with tempfile.TemporaryDirectory(prefix="liveness-bench-model-") as tmp:
        if args.b2_input is not None:
            checkpoint = resized_b2(checkpoint, args.b2_input, Path(tmp))
            card = read_card(checkpoint)
        result = run_bench(
            config,
            checkpoint,
            card,
            sessions=args.sessions,
            seconds=args.seconds,
            fps=args.fps,
            size=args.size,
            work_dir=args.work_dir,
            naive=not args.no_naive,
            naive_sessions=args.naive_sessions,
        )
        summary = result.summary()
        if args.memory:
            summary["memory_by_sessions"] = memory_profile(
                config, checkpoint, args.memory, seconds=2.0, fps=args.fps, size=args.size, work_dir=args.work_dir
            )
    print_bench(summary)
    if args.json:
        print(to_json(summary))
    return EXIT_OK


def print_bench(summary: dict) -> None:
    """The bench figures for a person: rates, bound, efficiency, speed-up, memory, bottleneck."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"liveness bench ({summary['machine']['cores']} cores, {summary['backend']})", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "cost_vs_decode",
        "decode_cpu_s_per_video_s",
        "scan_cpu_s_per_video_s",
        "scan_sessions_per_s",
        "sessions_per_s_per_core",
        "bound_sessions_per_s",
        "pipeline_efficiency",
        "steady_efficiency",
        "first_session_s",
        "naive_sessions_per_s",
        "speedup_vs_naive",
        "peak_rss_mb",
        "peak_pss_mb",
    ):
        table.add_row(key, str(summary.get(key)))
    table.add_row("cpu ms per second of video", ", ".join(f"{k} {v}" for k, v in summary["cpu_ms_per_video_s"].items()))
    table.add_row(
        "runs per second of video", ", ".join(f"{k} {v}" for k, v in summary["stage_counts_per_video_s"].items())
    )
    table.add_row(
        "bottleneck", f"{summary['bottleneck']} ({100 * summary['bottleneck_share']:.0f}% of the stages' CPU)"
    )
    by_input = summary.get("b2_cpu_ms_per_crop_by_input") or {}
    table.add_row(
        "b2 cpu ms per crop by input",
        ", ".join(f"{k} px {v}" for k, v in by_input.items()) + f" ({summary.get('b2_260_vs_128_cost')}x)",
    )
    for n, mem in (summary.get("memory_by_sessions") or {}).items():
        table.add_row(f"peak memory, {n} sessions", f"RSS {mem['peak_rss_mb']} MB, PSS {mem['peak_pss_mb']} MB")
    Console(soft_wrap=True).print(table)


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.cli.demo import run_demo

    return run_demo(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": cmd_scan,
    "demo": cmd_demo,
    "query": cmd_query,
    "report": cmd_report,
    "verdicts": cmd_verdicts,
    "diff": cmd_diff,
    "links": cmd_links,
    "bench": cmd_bench,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``liveness`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "quiet", False))
    handler = COMMANDS.get(args.command)
    if handler is None:
        from training.cli import TRAINING_COMMANDS

        handler = TRAINING_COMMANDS[args.command]
    try:
        return handler(args)
    except ScanInterrupted as stop:
        return 128 + stop.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
    except LivenessError as exc:
        print(f"liveness {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
