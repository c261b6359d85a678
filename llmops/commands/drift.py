"""`llmops drift`, `llmops sample-traffic`, `llmops bench drift`, `llmops triggers`: the drift monitor."""

from __future__ import annotations

import argparse

from llmops.exceptions import DriftDetected, NotEnoughData


def _iso_time(value: str):
    from datetime import UTC, datetime

    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time such as 2026-11-23T14:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _optional_time(value: str):
    # A blank or "None" value comes from a DAG template without a time: no window end.
    return _iso_time(value) if value and value.strip() not in ("", "None") else None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift",
        help="test whether recent traffic drifted from the training data (exit 0 no drift, 3 drift, 4 not enough data)",
        description=(
            "Compare a reference sample (training data or a preprocessing output) with current traffic: "
            "drift when a significant share of the traffic (at false-alarm rate alpha, calibrated by "
            "resampling reference documents) lies farther from the reference than its own documents do "
            "from each other, and that share exceeds the expected one by at least --min-effect. MMD and "
            "classifier tests are reported as descriptive signals; uncovered traffic is grouped with its "
            "nearest corpus chunks, and on drift REPORT/steer.json lists them for the next dataset build. "
            "Writes REPORT/report.json and REPORT/report.html and logs them to MLflow. "
            "Exit codes: 0 no drift, 3 drift, 4 not enough data, 2 error."
        ),
    )
    p.add_argument("--reference", help="preprocessing output folder, or JSONL/Parquet files or a folder of them "
                   "(default: the drift_reference_uri setting)")
    p.add_argument("--current", help="traffic: JSONL/Parquet files or a folder of them (default: the traffic_uri "
                   "setting); a missing location counts as no traffic")
    p.add_argument("--report", help="folder for report.json and report.html (default: "
                   "<drift_reports_uri>/<time stamp>)")
    p.add_argument("--alpha", type=float, default=0.05, help="false-alarm rate of the verdict (default 0.05)")
    p.add_argument("--min-samples", type=int, default=50, help="fewer texts on a side: not enough data (default 50)")
    p.add_argument("--max-samples", type=int, default=2000, help="subsample each side to this many texts (default 2000)")
    p.add_argument("--permutations", type=int, default=500,
                   help="permutations of the descriptive MMD/classifier tests (default 500)")
    p.add_argument("--resamples", type=int, default=1000,
                   help="random document splits of the reference for the coverage null (default 1000)")
    p.add_argument("--min-effect", type=float, default=None,
                   help="effect-size floor: excess uncovered share needed for drift (default: the "
                   "drift_min_effect setting, 0.05)")
    p.add_argument("--quantile", type=float, default=None,
                   help="coverage quantile of the reference's own nearest-neighbour distances (default: the "
                   "drift_coverage_quantile setting, 0.9)")
    p.add_argument("--index", default=None,
                   help="preprocessing output whose vector store gives uncovered groups their nearest chunks "
                   "(default: the drift_index_uri setting, else the reference if it is one, else processed_uri)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsampling, permutations and folds (default 0)")
    p.add_argument("--window-hours", type=float, default=0.0,
                   help="only current records from the last H hours before --until (default 0: every record up to --until)")
    p.add_argument("--until", type=_optional_time, default=None,
                   help="end of the window, ISO 8601 (the DAG passes the run's time); also the report's time stamp")
    p.add_argument("--field", choices=["prompt", "completion", "both"], default="prompt",
                   help="which text of a traffic record to compare (default prompt)")
    p.add_argument("--embedding-model", help="embedding model (default: the snapshot's model, else the setting)")
    p.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=True,
                   help="log the report to MLflow (default: yes; --no-mlflow to skip)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 whenever a verdict (or 'not enough data') was reached; the verdict is in the "
                   "summary (for the DAG, which reads it from XCom)")
    p.add_argument("--summary-json", help="write the step summary JSON here")
    p.set_defaults(handler=_run_drift)

    t = sub.add_parser(
        "sample-traffic",
        help="write sample inference traffic (JSONL) for the drift demo: in-domain or out-of-domain questions",
    )
    t.add_argument("--out", required=True, help="folder (or s3:// prefix) to write traffic-<kind>-<seed>.jsonl into")
    t.add_argument("--kind", required=True, choices=["in-domain", "out-of-domain"],
                   help="in-domain: Larkspur questions like the fine-tuning prompts; out-of-domain: cooking questions")
    t.add_argument("--n", type=int, default=300, help="number of requests (default 300)")
    t.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    t.add_argument("--end", type=_iso_time, default=None,
                   help="time stamp of the last request, ISO 8601 (default: now, to the second)")
    t.add_argument("--span-hours", type=float, default=1.0, help="requests are spread over this many hours (default 1)")
    t.add_argument("--summary-json", help="write a summary JSON here")
    t.set_defaults(handler=_run_sample_traffic)

    g = sub.add_parser("triggers", help="show the retrain-trigger ledger (decisions of the fine-tune DAG's trigger check)")
    g.add_argument("--ledger", help="ledger file (default: <state_uri>/triggers.jsonl)")
    g.add_argument("--last", type=int, default=20, help="show the last N records (default 20)")
    g.set_defaults(handler=_run_triggers)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "drift",
        help="false-alarm rates (paragraph- and document-level nulls), power and speed of the drift verdict on "
        "real corpora, next to the distribution tests and Evidently's default",
    )
    b.add_argument("--json", action="store_true", help="print the figures as JSON only")
    b.add_argument("--splits", type=int, default=50, help="random splits per setting (default 50, at least 50)")
    b.add_argument("--sizes", default="100,300", help="samples per side, comma separated (default 100,300)")
    b.add_argument("--shifts", default="0.1,0.3", help="shares of other-corpus paragraphs (default 0.1,0.3)")
    b.add_argument("--timing-sizes", default="300,2000", help="per-side sizes to time (default 300,2000)")
    b.add_argument("--alpha", type=float, default=0.05)
    b.add_argument("--permutations", type=int, default=500, help="permutations of the distribution tests")
    b.add_argument("--resamples", type=int, default=1000, help="document splits of the coverage null (default 1000)")
    b.add_argument("--quantile", type=float, default=None, help="coverage quantile (default: the setting)")
    b.add_argument("--min-effect", type=float, default=None, help="effect-size floor (default: the setting)")
    b.add_argument("--no-distribution", action="store_true",
                   help="skip the MMD/classifier distribution tests (the first version's verdict)")
    b.add_argument("--no-evidently", action="store_true", help="skip the Evidently comparison")
    b.add_argument("--base", required=True,
                   help="folder of the no-drift corpus (Markdown documents), e.g. a documentation set")
    b.add_argument("--other", required=True, help="folder of the shift corpus mixed into the current side")
    b.add_argument("--embedding-model", help="embedding model (default: the embedding_model setting)")
    b.set_defaults(handler=_run_bench)


def _run_drift(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from llmops import storage
    from llmops.cli import emit_summary
    from llmops.drift.monitor import (
        make_config,
        reference_default,
        report_folder_name,
        reports_root,
        run_drift,
        summary_of,
    )
    from llmops.settings import load_settings

    settings = load_settings()
    # Empty strings come from DAG Params left blank: they mean "the setting's default".
    reference = args.reference or reference_default(settings)
    current = args.current or settings.traffic
    report_dir = args.report or storage.join(
        reports_root(settings), report_folder_name(args.until or datetime.now(UTC))
    )
    cfg = make_config(
        reference_uri=reference,
        current_uri=current,
        report_uri=report_dir,
        alpha=args.alpha,
        min_samples=args.min_samples,
        max_samples=args.max_samples,
        permutations=args.permutations,
        resamples=args.resamples,
        min_effect=settings.drift.drift_min_effect if args.min_effect is None else args.min_effect,
        quantile=settings.drift.drift_coverage_quantile if args.quantile is None else args.quantile,
        max_groups=settings.drift.drift_max_groups,
        chunks_per_group=settings.drift.drift_chunks_per_group,
        index_uri=args.index or None,
        seed=args.seed,
        window_hours=args.window_hours,
        until=args.until,
        field=args.field,
        embedding_model=args.embedding_model or None,
        log_mlflow=args.mlflow,
    )
    rep = run_drift(cfg, settings)
    summary = summary_of(rep)
    emit_summary(args, summary)
    if args.exit_zero or rep["status"] not in ("drift", "not_enough_data"):
        return 0
    if rep["status"] == "drift":
        raise DriftDetected(f"significant drift: see {summary.get('report_uri')} (--exit-zero: exit 0)")
    raise NotEnoughData(f"too few samples for a verdict: see {summary.get('report_uri')} (--exit-zero: exit 0)")


def _run_sample_traffic(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from llmops import storage
    from llmops.cli import emit_summary
    from llmops.dev.traffic import sample_traffic, to_jsonl
    from llmops.exceptions import ConfigError

    if args.n < 1:
        raise ConfigError(f"--n = {args.n}: give at least 1 request")
    if args.span_hours <= 0:
        raise ConfigError(f"--span-hours = {args.span_hours}: give a positive number of hours")
    storage.check_uri(args.out, "--out")
    end = args.end or datetime.now(UTC).replace(microsecond=0)
    rows = sample_traffic(args.kind, args.n, args.seed, end, args.span_hours)
    target = storage.join(args.out, f"traffic-{args.kind}-{args.seed}.jsonl")
    storage.write_text(target, to_jsonl(rows))
    summary = {"file": target, "kind": args.kind, "requests": len(rows), "seed": args.seed,
               "first": rows[0]["timestamp"], "last": rows[-1]["timestamp"]}
    return emit_summary(args, summary)


def _run_triggers(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.settings import load_settings
    from llmops.triggers import TriggerLedger, ledger_uri

    uri = args.ledger or ledger_uri(load_settings())
    records = TriggerLedger(uri).read()
    print_json({"ledger": uri, "records": [r.to_dict() for r in records[-args.last:]]})
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.drift import BenchConfig, run_bench, text_summary
    from llmops.settings import load_settings

    settings = load_settings()
    cfg = BenchConfig.from_args(args, settings)
    result = run_bench(cfg, settings)
    if not args.json:
        print(text_summary(result))
    print_json(result)
    return 0
