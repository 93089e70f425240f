"""Benchmark spend-proxy against a plain pass-through proxy, in one run: ``make bench``.

What one run does
1. Starts the mock upstream, the pass-through (``passthrough.py``) and each spend-proxy variant
   (``sp-redis-pg``: Redis + PostgreSQL, mode ``check``; ``sp-redis-pg-reserve``: the same in
   mode ``reserve``; ``sp-sqlite``: embedded) as separate processes, each with a probe request.
2. Runs the matrix {JSON, SSE} x ``--concurrency`` x targets with ``loadgen.py`` (a separate
   process). Within one (mode, concurrency) cell the targets run back to back, in an order that
   flips from cell to cell, so slow drift of the machine does not favour one target.
3. Stops everything, drops the scratch database and Redis db, writes every figure to a JSON file
   under ``bench/results/`` and prints absolute figures, ratios to the pass-through and the
   issue's targets (see ``report.py``).

Figures are only comparable within one run: the machine has 2 shared cores, and the load
generator, the mock upstream, Redis and PostgreSQL all compete with the proxy for them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

from harness import BENCH_DIR, Harness
from report import PASSTHROUGH, TARGET_CONCURRENCY, aggregate, render, verdicts
from spendproxy import VARIANTS

ALL_TARGETS = [PASSTHROUGH, *VARIANTS]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=float, help="uncounted seconds per cell (default 2)")
    parser.add_argument("--concurrency", help="comma-separated list (default 1,16,64)")
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run: 3 s cells, c=16")
    parser.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated")
    parser.add_argument("--modes", default="json,stream", help="json, stream or both")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the matrix; medians reported")
    parser.add_argument("--chunks", type=int, default=20, help="content events per stream")
    parser.add_argument(
        "--no-include-usage",
        dest="include_usage",
        action="store_false",
        help="streaming clients do not ask for usage (spend-proxy must add it and strip it)",
    )
    parser.add_argument("--out", type=Path, help="results JSON (default bench/results/<time>.json)")
    parser.add_argument(
        "--profile", action="store_true", help="then sample each target with py-spy at c=16"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep configs and logs")
    parser.add_argument("--spend-proxy", default=str(Path(sys.executable).parent / "spend-proxy"))
    args = parser.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    args.concurrency = [
        int(c) for c in (args.concurrency or ("16" if quick else "1,16,64")).split(",")
    ]
    args.targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in args.targets if t not in ALL_TARGETS]
    if unknown or PASSTHROUGH not in args.targets:
        parser.error(f"--targets must include {PASSTHROUGH} and be among {ALL_TARGETS}")
    args.modes = [m == "stream" for m in args.modes.split(",") if m in ("json", "stream")]
    return args


def run_matrix(harness: Harness, args: argparse.Namespace) -> list[dict[str, Any]]:
    load = {"duration": args.duration, "warmup": args.warmup, "include_usage": args.include_usage}
    cells: list[dict[str, Any]] = []
    order = list(harness.targets)
    total = args.rounds * len(args.modes) * len(args.concurrency) * len(order)
    for round_ in range(args.rounds):
        for stream in args.modes:
            for concurrency in args.concurrency:
                for target in order:
                    cell = harness.measure_cell(
                        target, stream=stream, concurrency=concurrency, load=load
                    )
                    cells.append({"round": round_, **cell})
                    _progress(len(cells), total, cell)
                order.reverse()
    return cells


def run_profiles(harness: Harness, args: argparse.Namespace, out_dir: Path) -> list[str]:
    """Sample every target under load at c=16 (not measured: sampling slows it down)."""
    load = {"duration": args.duration, "warmup": args.warmup, "include_usage": args.include_usage}
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"PROFILES (py-spy, concurrency {TARGET_CONCURRENCY}; raw stacks in {out_dir})"]
    for target in harness.targets:
        for stream in args.modes:
            mode = "stream" if stream else "json"
            print(f"[bench] profiling {target.name} {mode}", file=sys.stderr, flush=True)
            lines.append(f"{target.name} {mode}:")
            lines += harness.profile_cell(
                target,
                stream=stream,
                concurrency=TARGET_CONCURRENCY,
                load=load,
                out=out_dir / f"{target.name}-{mode}.txt",
            )
    return lines


def _progress(index: int, total: int, cell: dict[str, Any]) -> None:
    mode = "stream" if cell["stream"] else "json"
    head = f"[bench {index}/{total}] {mode:<6} c={cell['concurrency']:<3} {cell['target']:<20}"
    result = cell.get("result")
    if result is None:
        print(f"{head} FAILED: {cell.get('error')}", file=sys.stderr, flush=True)
        return
    p50 = (result.get("latency_ms") or {}).get("p50")
    print(
        f"{head} {result['rps']:>8.0f} req/s  p50 {p50} ms  errors {result['error_total']}",
        file=sys.stderr,
        flush=True,
    )


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], capture_output=True, text=True, cwd=BENCH_DIR, check=False
    )
    return done.stdout.strip()


def machine_meta() -> dict[str, Any]:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if "model name" in line), "?")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = args.out or BENCH_DIR / "results" / f"bench-{stamp}.json"
    run_dir = Path(tempfile.mkdtemp(prefix="spend-proxy-bench-"))
    harness = Harness(run_dir=run_dir, spend_proxy=args.spend_proxy, chunks=args.chunks)
    meta = {"started_at": stamp, **machine_meta(), "args": {**vars(args), "out": str(out)}}
    cells: list[dict[str, Any]] = []
    spent: dict[str, Any] = {}
    profiles: list[str] = []
    try:
        harness.start([t for t in args.targets if t != PASSTHROUGH])
        cells = run_matrix(harness, args)
        if args.profile:
            profiles = run_profiles(harness, args, out.with_name(out.stem + "-profiles"))
        spent = harness.spent_micros()
    finally:
        exits = harness.close()
        if not args.keep_workdir:
            shutil.rmtree(run_dir, ignore_errors=True)
    document: dict[str, Any] = {"meta": meta, "unavailable": harness.unavailable}
    document["exit_status"] = exits
    merged = aggregate(cells)
    document |= {"spent_micros": spent, "cells": cells, "aggregated": merged}
    document |= {"verdicts": verdicts(merged), "profiles": profiles}
    _write(out, document)
    notes = _notes(harness, spent, exits, out, run_dir if args.keep_workdir else None)
    print(render(merged, [*profiles, *notes]))
    return 0 if cells and all("result" in c for c in cells) else 1


def _notes(
    harness: Harness,
    spent: dict[str, Any],
    exits: dict[str, int | None],
    out: Path,
    workdir: Path | None,
) -> list[str]:
    notes = [
        "One run on a shared, noisy 2-core machine: quote the ratios, not the absolute figures.",
        "lg% = load generator CPU (% of one core); it competes with the proxy for the 2 cores.",
    ]
    notes += [
        f"NOT MEASURED {name}: {why.splitlines()[0]}" for name, why in harness.unavailable.items()
    ]
    notes += [
        f"spend-proxy recorded spend ({storage}): {value} micros"
        for storage, value in spent.items()
    ]
    notes += [f"exit status on SIGTERM: {exits}", f"results: {out}"]
    if workdir is not None:
        notes.append(f"configs and logs kept in {workdir}")
    return notes


if __name__ == "__main__":
    sys.exit(main())
