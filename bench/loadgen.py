"""Closed-loop load generator for ``/v1/chat/completions``; prints one JSON object.

How it measures
1. ``--concurrency`` workers each own one keep-alive connection (:mod:`httpwire`) and send the
   same request back to back: a new request leaves only when the previous answer is complete.
2. The first ``--warmup`` seconds are not counted (connections open, caches fill, the JIT-less
   interpreter settles). Then, for ``--duration`` seconds, every answer that *completes* inside
   the window is checked and counted.
3. An answer counts as ok only if: status 200; every ``--expect-header`` is present; a JSON body
   has a ``usage`` block; a stream ends with ``data: [DONE]`` and carries usage exactly when the
   request asked for it (``stream_options.include_usage``). Anything else is an error, by kind.
4. Latency = request written -> last byte; TTFB = -> first response byte; TTFT = -> first body
   byte (for a stream, the first SSE event). Percentiles are nearest-rank over all ok answers.
5. For each ``--watch NAME=PID`` (the process and its descendants): CPU seconds in the window,
   CPU per ok answer, current and peak RSS (``procstats``). The generator's own CPU is reported
   too, because on a 2-core machine it competes with the system under test, and so is the CPU
   of everything else on the machine (Redis, PostgreSQL, other users: noise or part of the cost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import uvloop
from httpwire import Connection, Reply, WireError
from procstats import machine_cpu, sample_tree

__all__ = ["build_request", "main"]

USER_TEXT = (
    "Read the incident report below and reply with a two-line summary and a severity. "
    "The nightly export to the data warehouse stopped at 02:14 UTC because the disk of the "
    "staging host filled up; the retry at 03:00 succeeded but the dashboards lagged by an hour. "
)


def build_request(
    url: str, key: str, model: str, *, stream: bool, include_usage: bool, prompt_chars: int
) -> bytes:
    """The raw HTTP/1.1 request (head + JSON body) every worker sends."""
    parts = urlsplit(url)
    text = (USER_TEXT * (prompt_chars // len(USER_TEXT) + 1))[:prompt_chars]
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a terse operations assistant."},
            {"role": "user", "content": text},
        ],
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
        if include_usage:
            body["stream_options"] = {"include_usage": True}
    payload = json.dumps(body, separators=(",", ":")).encode()
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", "User-Agent: spend-proxy-bench"]
    head += ["Content-Type: application/json", "Accept: application/json, text/event-stream"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    head.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def _percentiles_ms(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 3)

    mean = round(sum(ordered) / len(ordered) * 1000, 3)
    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "mean": mean, "max": rank(100)}


@dataclass
class Tally:
    """What the workers saw during the measured window."""

    latency_s: list[float] = field(default_factory=list)
    ttfb_s: list[float] = field(default_factory=list)
    ttft_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if detail and len(self.samples) < 5:
            self.samples.append(f"{kind}: {detail[:300]}")


class LoadGenerator:
    def __init__(self, args: argparse.Namespace, request: bytes) -> None:
        self.args = args
        self.request = request
        parts = urlsplit(args.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.expect = [name.lower().encode() + b":" for name in args.expect_header]
        self.recording = False
        self.stopping = False
        self.tally = Tally()

    def _problem(self, reply: Reply) -> str | None:
        if reply.status != 200:
            return f"http_{reply.status}"
        for name in self.expect:
            if name not in reply.head:
                return f"missing_{name[:-1].decode()}"
        has_usage = b'"prompt_tokens"' in reply.body
        if not self.args.stream:
            return None if has_usage else "no_usage"
        if not reply.body.rstrip().endswith(b"data: [DONE]"):
            return "stream_not_done"
        if has_usage != self.args.include_usage:
            return "stream_usage_missing" if self.args.include_usage else "stream_usage_leaked"
        return None

    def _record(self, sent_at: float, reply: Reply) -> None:
        problem = self._problem(reply)
        if problem is not None:
            self.tally.error(problem, reply.body[:300].decode("utf-8", "replace"))
            return
        self.tally.latency_s.append(reply.done_at - sent_at)
        self.tally.ttfb_s.append(reply.first_byte_at - sent_at)
        if reply.first_body_at is not None:
            self.tally.ttft_s.append(reply.first_body_at - sent_at)

    async def _exchange(self, conn: Connection) -> tuple[float, Reply]:
        sent_at = time.perf_counter()
        async with asyncio.timeout(self.args.timeout):
            reply = await conn.send(self.request)
        return sent_at, reply

    async def worker(self) -> None:
        loop = asyncio.get_running_loop()
        conn: Connection | None = None
        while not self.stopping:
            try:
                if conn is None or conn.closed:
                    _, conn = await loop.create_connection(Connection, self.host, self.port)
                sent_at, reply = await self._exchange(conn)
                if not reply.keep_alive:
                    conn.abort()
                if self.recording:
                    self._record(sent_at, reply)
            except (TimeoutError, WireError, OSError) as exc:
                if conn is not None:
                    conn.abort()
                if self.recording:
                    self.tally.error(type(exc).__name__, str(exc))
                await asyncio.sleep(0.05)  # do not spin on a refused connection
        if conn is not None:
            conn.close()

    async def run(self) -> dict[str, Any]:
        workers = [asyncio.create_task(self.worker()) for _ in range(self.args.concurrency)]
        await asyncio.sleep(self.args.warmup)
        before = _snapshot(self.args.watch)
        started = time.perf_counter()
        self.recording = True
        await asyncio.sleep(self.args.duration)
        self.recording = False
        elapsed = time.perf_counter() - started
        after = _snapshot(self.args.watch)
        # Let in-flight requests finish (bounded), so the target sees no mass disconnect that
        # would run its abort path during the next cell.
        self.stopping = True
        await asyncio.wait(workers, timeout=min(5.0, self.args.timeout))
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        return self._report(elapsed, before, after)

    def _report(
        self, elapsed: float, before: dict[str, Any], after: dict[str, Any]
    ) -> dict[str, Any]:
        ok = len(self.tally.latency_s)
        return {
            "url": self.args.url,
            "stream": self.args.stream,
            "include_usage": self.args.include_usage,
            "concurrency": self.args.concurrency,
            "warmup_s": self.args.warmup,
            "elapsed_s": round(elapsed, 3),
            "ok": ok,
            "rps": round(ok / elapsed, 1),
            "errors": self.tally.errors,
            "error_total": sum(self.tally.errors.values()),
            "error_samples": self.tally.samples,
            "latency_ms": _percentiles_ms(self.tally.latency_s),
            "ttfb_ms": _percentiles_ms(self.tally.ttfb_s),
            "ttft_ms": _percentiles_ms(self.tally.ttft_s),
            **_cpu_report(elapsed, ok, before, after),
        }


def _cpu_report(
    elapsed: float, ok: int, before: dict[str, Any], after: dict[str, Any]
) -> dict[str, Any]:
    """CPU and memory of the watched trees, of this process and of the rest of the machine."""
    watched: dict[str, Any] = {}
    for name, sample in after["trees"].items():
        cpu_s = sample.cpu_s - before["trees"][name].cpu_s
        watched[name] = {
            "pid": sample.pids[0],
            "nprocs": len(sample.pids),
            "cpu_s": round(cpu_s, 3),
            "cpu_pct_of_core": round(100 * cpu_s / elapsed, 1),
            "cpu_ms_per_req": round(1000 * cpu_s / ok, 4) if ok else None,
            "rss_mb": round(sample.rss_mb, 1),
            "peak_rss_mb": round(sample.peak_rss_mb, 1),
        }
    own_pct = 100 * (after["self_cpu_s"] - before["self_cpu_s"]) / elapsed
    busy = after["machine"].busy - before["machine"].busy
    total = after["machine"].total - before["machine"].total
    cpus = os.cpu_count() or 1
    machine_pct = 100 * cpus * busy / total if total else 0.0  # in % of one core
    known_pct = own_pct + sum(w["cpu_pct_of_core"] for w in watched.values())
    return {
        "watched": watched,
        "loadgen": {
            "cpu_pct_of_core": round(own_pct, 1),
            "cpu_us_per_req": round(own_pct * elapsed * 1e4 / ok, 1) if ok else None,
        },
        "machine_cpus": cpus,
        "machine_busy_pct": round(machine_pct / cpus, 1),
        # Everything else (Redis, PostgreSQL, other users of the machine), % of one core.
        "other_cpu_pct_of_core": round(machine_pct - known_pct, 1),
    }


def _snapshot(watch: list[str]) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "self_cpu_s": usage.ru_utime + usage.ru_stime,
        "machine": machine_cpu(),
        "trees": {
            name: sample_tree(int(pid)) for name, _, pid in (w.partition("=") for w in watch)
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:18101/v1/chat/completions")
    parser.add_argument("--key", default="", help="sent as 'Authorization: Bearer KEY'")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("-c", "--concurrency", type=int, default=16)
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument(
        "--no-include-usage",
        dest="include_usage",
        action="store_false",
        help="streams: do not ask for stream_options.include_usage",
    )
    parser.add_argument("--prompt-chars", type=int, default=600)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--watch", action="append", default=[], help="NAME=PID to measure")
    parser.add_argument("--expect-header", action="append", default=[], help="must be present")
    args = parser.parse_args(argv)
    if not args.stream:
        args.include_usage = True  # a JSON answer always has usage
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    request = build_request(
        args.url,
        args.key,
        args.model,
        stream=args.stream,
        include_usage=args.include_usage,
        prompt_chars=args.prompt_chars,
    )
    result = uvloop.run(LoadGenerator(args, request).run())
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
