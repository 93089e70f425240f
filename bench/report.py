"""The benchmark's printed report: absolute figures, ratios to the pass-through, and targets.

Rules
1. Ratios compare cells measured in the same run, same mode and same concurrency; a figure from
   another run is never used (the machine is shared and noisy: absolute figures drift).
2. With several rounds, each figure of a cell is the median over its rounds (peak RSS: the
   maximum; error counts: the sum), and ratios are taken between those medians.
3. Throughput ratio = target req/s / pass-through req/s (higher is better); added p50 = target
   p50 - pass-through p50 in ms; CPU ratio = target CPU per request / pass-through's.
4. The issue's targets are judged at concurrency 16 for every spend-proxy variant, JSON and
   streaming: throughput ratio >= 0.60, added p50 <= 1 ms; and peak RSS < 150 MB per process
   over the whole run. A cell that is missing or failed is ``N/A``, never a pass.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = ["PASSTHROUGH", "TARGET_CONCURRENCY", "aggregate", "compare", "render", "verdicts"]

PASSTHROUGH = "passthrough"
TARGET_CONCURRENCY = 16
MIN_THROUGHPUT_RATIO = 0.60
MAX_ADDED_P50_MS = 1.0
MAX_RSS_MB = 150.0

Cell = dict[str, Any]


def _merge(values: list[Any], key: str) -> Any:
    """One value out of the rounds' values of the same field (rule 2)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        keys = dict.fromkeys(k for v in present for k in v)
        if key == "errors":
            return {k: sum(v.get(k, 0) for v in present) for k in keys}
        return {k: _merge([v.get(k) for v in present], k) for k in keys}
    if isinstance(first, bool) or not isinstance(first, int | float):
        return [x for v in present for x in v][:5] if isinstance(first, list) else first
    if key == "peak_rss_mb":
        return max(present)
    if key in ("error_total", "ok"):
        return sum(present)
    return round(statistics.median(present), 4)


def aggregate(cells: list[Cell]) -> list[Cell]:
    """One cell per (target, mode, concurrency), merging rounds (rule 2); failed rounds drop."""
    groups: dict[tuple[str, bool, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell["target"], cell["stream"], cell["concurrency"]), []).append(cell)
    merged: list[Cell] = []
    for (target, stream, concurrency), group in groups.items():
        out: Cell = {"target": target, "stream": stream, "concurrency": concurrency}
        results = [c["result"] for c in group if c.get("result")]
        out["rounds"] = len(results)
        if results:
            out["result"] = _merge(results, "result")
        else:
            out["error"] = group[-1].get("error", "no result")
        merged.append(out)
    return merged


def _find(cells: list[Cell], target: str, stream: bool, concurrency: int) -> Cell | None:
    for cell in cells:
        if (cell["target"], cell["stream"], cell["concurrency"]) == (target, stream, concurrency):
            return cell
    return None


def _p(result: dict[str, Any] | None, group: str, key: str = "p50") -> float | None:
    value = ((result or {}).get(group) or {}).get(key)
    return None if value is None else float(value)


def _watched(result: dict[str, Any] | None, name: str = "proxy") -> dict[str, Any]:
    return dict(((result or {}).get("watched") or {}).get(name) or {})


def compare(cell: Cell, base: Cell | None) -> dict[str, float | None]:
    """Throughput ratio, added p50 (ms) and CPU-per-request ratio of ``cell`` to ``base``."""
    mine, theirs = cell.get("result"), (base or {}).get("result")
    out: dict[str, float | None] = {"throughput_ratio": None, "added_p50_ms": None}
    out["cpu_ratio"] = None
    if not mine or not theirs or not mine.get("ok") or not theirs.get("ok"):
        return out
    out["throughput_ratio"] = round(mine["rps"] / theirs["rps"], 3)
    p50, base_p50 = _p(mine, "latency_ms"), _p(theirs, "latency_ms")
    if p50 is not None and base_p50 is not None:
        out["added_p50_ms"] = round(p50 - base_p50, 3)
    cpu = _watched(mine).get("cpu_ms_per_req")
    base_cpu = _watched(theirs).get("cpu_ms_per_req")
    if cpu and base_cpu:
        out["cpu_ratio"] = round(cpu / base_cpu, 2)
    return out


def _fmt(value: Any, spec: str) -> str:
    width = spec.lstrip("+").split(".")[0]
    return format("-", f">{width}") if value is None else format(value, spec)


COLUMNS = (
    ("c", "3"), ("target", "<20"), ("req/s", "7"), ("p50ms", "6"), ("p99ms", "6"),
    ("ttfb", "6"), ("ttft", "6"), ("err", "4"), ("cpu ms/req", "10"), ("prx%", "4"),
    ("RSSmb", "5"), ("up%", "4"), ("lg%", "4"), ("oth%", "4"),
)  # fmt: skip
HEADER = " ".join(format(name, align if "<" in align else f">{align}") for name, align in COLUMNS)
HEADER += f" | {'thr x':>5} {'+p50ms':>7} {'cpu x':>5}"


def _row(cell: Cell, base: Cell | None) -> str:
    result = cell.get("result")
    head = f"{cell['concurrency']:>3} {cell['target']:<20}"
    if not result:
        return f"{head} FAILED: {str(cell.get('error', '?')).splitlines()[-1][:90]}"
    proxy, ratios = _watched(result), compare(cell, base)
    figures = [
        _fmt(result["rps"], "7.0f"), _fmt(_p(result, "latency_ms"), "6.2f"),
        _fmt(_p(result, "latency_ms", "p99"), "6.2f"), _fmt(_p(result, "ttfb_ms"), "6.2f"),
        _fmt(_p(result, "ttft_ms"), "6.2f"), _fmt(result["error_total"], "4d"),
        _fmt(proxy.get("cpu_ms_per_req"), "10.3f"), _fmt(proxy.get("cpu_pct_of_core"), "4.0f"),
        _fmt(proxy.get("peak_rss_mb"), "5.0f"),
        _fmt(_watched(result, "upstream").get("cpu_pct_of_core"), "4.0f"),
        _fmt(result["loadgen"]["cpu_pct_of_core"], "4.0f"),
        _fmt(result.get("other_cpu_pct_of_core"), "4.0f"),
    ]  # fmt: skip
    thr, added, cpu = ratios["throughput_ratio"], ratios["added_p50_ms"], ratios["cpu_ratio"]
    tail = f"{_fmt(thr, '5.2f')} {_fmt(added, '+7.2f')} {_fmt(cpu, '5.2f')}"
    return f"{head} {' '.join(figures)} | {tail}"


def _table(cells: list[Cell], stream: bool) -> list[str]:
    title = "STREAMING (SSE)" if stream else "NON-STREAMING (JSON)"
    lines = [title, HEADER, "-" * len(HEADER)]
    for concurrency in sorted({c["concurrency"] for c in cells if c["stream"] == stream}):
        base = _find(cells, PASSTHROUGH, stream, concurrency)
        ordered = sorted(
            (c for c in cells if c["stream"] == stream and c["concurrency"] == concurrency),
            key=lambda c: (c["target"] != PASSTHROUGH, c["target"]),
        )
        lines += [_row(cell, base) for cell in ordered]
    return lines


def _verdict(
    target: str, mode: str, metric: str, value: float | None, ok: bool, goal: str
) -> dict[str, Any]:
    verdict = "N/A" if value is None else ("PASS" if ok else "MISS")
    return dict(target=target, mode=mode, metric=metric, value=value, goal=goal, verdict=verdict)


def verdicts(cells: list[Cell]) -> list[dict[str, Any]]:
    """One verdict per spend-proxy variant and target (rule 4), over aggregated cells."""
    out: list[dict[str, Any]] = []
    for target in dict.fromkeys(c["target"] for c in cells if c["target"] != PASSTHROUGH):
        for stream in (False, True):
            cell = _find(cells, target, stream, TARGET_CONCURRENCY)
            if cell is None:
                continue
            ratios = compare(cell, _find(cells, PASSTHROUGH, stream, TARGET_CONCURRENCY))
            mode = "stream" if stream else "json"
            thr, added = ratios["throughput_ratio"], ratios["added_p50_ms"]
            thr_ok = thr is not None and thr >= MIN_THROUGHPUT_RATIO
            added_ok = added is not None and added <= MAX_ADDED_P50_MS
            thr_goal, added_goal = f">= {MIN_THROUGHPUT_RATIO:.2f}", f"<= +{MAX_ADDED_P50_MS:.2f}"
            out.append(_verdict(target, mode, "throughput_ratio", thr, thr_ok, thr_goal))
            out.append(_verdict(target, mode, "added_p50_ms", added, added_ok, added_goal))
        peaks = [
            _watched(c.get("result")).get("peak_rss_mb") for c in cells if c["target"] == target
        ]
        peak = max((p for p in peaks if p is not None), default=None)
        ok = peak is not None and peak < MAX_RSS_MB
        out.append(_verdict(target, "all", "peak_rss_mb", peak, ok, f"< {MAX_RSS_MB:.0f}"))
    return out


def render(cells: list[Cell], notes: list[str]) -> str:
    """The whole printed report, from aggregated cells."""
    lines: list[str] = []
    for stream in (False, True):
        if any(c["stream"] == stream for c in cells):
            lines += [*_table(cells, stream), ""]
    lines.append(
        f"TARGETS (concurrency {TARGET_CONCURRENCY}; ratios to the pass-through, same run)"
    )
    for v in verdicts(cells):
        value = "-" if v["value"] is None else f"{v['value']:.3f}"
        lines.append(
            f"  {v['verdict']:<4}  {v['target']:<20} {v['mode']:<6} {v['metric']:<17} "
            f"{value:>9}  (target {v['goal']})"
        )
    return "\n".join([*lines, "", *notes])
