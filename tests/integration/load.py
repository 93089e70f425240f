"""Client traffic for the integration tests: mixed calls, bounded concurrency, every outcome kept.

A :class:`Call` names the replica, the user, the kind of call and the model; its ``call_id``
goes out as ``x-request-id``, so the fake upstream files its usage under it, and the answer's
``x-spend-request-id`` names the ledger row the proxy will write for it. :func:`drive` runs an
iterable of calls with at most ``concurrency`` in flight and returns one :class:`Outcome` per
call; a transport error is an outcome (status 0), never an exception, so a test can count it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

__all__ = [
    "KINDS",
    "Call",
    "Outcome",
    "drive",
    "eventually",
    "mixed_calls",
    "report",
    "request_for",
    "usage_status",
    "while_",
]

CHAT_MODELS = ("gpt-4o-mini", "gpt-4o", "test-model")
EMBEDDING_MODEL = "text-embedding-3-small"
KINDS = (
    "chat",
    "chat-stream",
    "chat-stream-usage",
    "responses",
    "responses-stream",
    "embeddings",
)
_REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Call:
    call_id: str
    target: int  # index of the replica
    user: str
    kind: str
    model: str


@dataclass(frozen=True, slots=True)
class Outcome:
    call: Call
    status: int  # 0: transport error
    ledger_id: str | None  # x-spend-request-id
    complete: bool  # a 200 whose body is whole (a stream ended properly)
    finished_at: float  # time.monotonic()
    headers: Mapping[str, str]
    detail: str  # start of the body of an error answer, or the transport error


def request_for(call: Call) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of ``call``."""
    messages = [{"role": "user", "content": f"say hello ({call.call_id})"}]
    if call.kind == "embeddings":
        return "/v1/embeddings", {"model": call.model, "input": call.call_id}
    if call.kind.startswith("responses"):
        body: dict[str, Any] = {"model": call.model, "input": messages[0]["content"]}
        return "/v1/responses", body | ({"stream": True} if call.kind.endswith("stream") else {})
    body = {"model": call.model, "messages": messages}
    if call.kind != "chat":
        body["stream"] = True
    if call.kind == "chat-stream-usage":
        body["stream_options"] = {"include_usage": True}
    return "/v1/chat/completions", body


def _whole(call: Call, body: bytes) -> bool:
    """Whether a 200 answer is complete, and a chat stream carries usage iff the client asked."""
    if call.kind in ("chat-stream", "chat-stream-usage"):
        usage_chunk = b'"choices":[],"usage":{' in body
        asked = call.kind == "chat-stream-usage"
        return body.endswith(b"data: [DONE]\n\n") and usage_chunk == asked
    if call.kind == "responses-stream":
        return b"event: response.completed" in body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("usage"), dict)


def mixed_calls(
    users: Sequence[str], replicas: int, count: int, *, prefix: str, seed: int = 1
) -> list[Call]:
    """``count`` calls spread over users, replicas, kinds and models (reproducible)."""
    rng = random.Random(seed)
    calls = []
    for n in range(count):
        kind = rng.choice(KINDS)
        model = EMBEDDING_MODEL if kind == "embeddings" else rng.choice(CHAT_MODELS)
        calls.append(Call(f"{prefix}{n:05d}", n % replicas, rng.choice(users), kind, model))
    return calls


async def eventually(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` every 20 ms until true; the seconds it took. Fails after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout_s} s: {what}")


async def usage_status(
    session: aiohttp.ClientSession, url: str, key: str
) -> tuple[int, dict[str, Any]]:
    """``GET /v1/usage`` with ``key`` on the replica at ``url``: status and JSON (or ``{}``)."""
    headers = {"Authorization": f"Bearer {key}"}
    async with session.get(url + "/v1/usage", headers=headers) as response:
        body = await response.json() if response.status == 200 else {}
        return response.status, body


def report(name: str, **numbers: object) -> None:
    """Print one line of measurements (``pytest -s`` shows them)."""
    print(f"[{name}] " + ", ".join(f"{key}={value}" for key, value in numbers.items()))


def while_(condition: Callable[[], bool], calls: Iterable[Call]) -> Iterator[Call]:
    """``calls`` until ``condition()`` turns false (checked before each call)."""
    return itertools.takewhile(lambda _: condition(), calls)


async def _send(
    session: aiohttp.ClientSession, base_urls: Sequence[str], keys: Mapping[str, str], call: Call
) -> Outcome:
    path, body = request_for(call)
    headers = {"Authorization": f"Bearer {keys[call.user]}", "x-request-id": call.call_id}
    try:
        async with session.post(base_urls[call.target] + path, json=body, headers=headers) as r:
            data = await r.read()
            answer = dict(r.headers)
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Outcome(call, 0, None, False, time.monotonic(), {}, repr(exc))
    complete = status == 200 and _whole(call, data)
    detail = "" if status == 200 else data[:300].decode(errors="replace")
    ledger_id = answer.get("x-spend-request-id")
    return Outcome(call, status, ledger_id, complete, time.monotonic(), answer, detail)


async def drive(
    base_urls: Sequence[str],
    keys: Mapping[str, str],
    calls: Iterable[Call],
    *,
    concurrency: int,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Send ``calls`` with at most ``concurrency`` in flight; one outcome per call, in the
    order they finished. ``on_outcome`` sees each as it arrives (to stop a ``while_``)."""
    pending = iter(calls)
    outcomes: list[Outcome] = []
    timeout = aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def worker() -> None:
            for call in pending:  # shared: each call is taken by exactly one worker
                outcome = await _send(session, base_urls, keys, call)
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes
