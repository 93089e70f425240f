"""Enforcement mode ``reserve`` through the whole proxy, on the in-process counters (SPEC §2).

Every way a call can end leaves no reservation behind: a charge settles it (success, streams cut
or abandoned, charged an estimate), a release drops it (upstream HTTP error, unreachable or
timed-out upstream, an answer the proxy cannot read), and a reservation whose process never
settles it expires after ``reservation_ttl_s``. The amount reserved is the upper-bound estimate of
``proxy/estimate.py``; with the fake upstream's usage it is indeed above the cost charged.

The same paths run 10,000 times against the real Redis in
``tests/integration/test_reserve_redis.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from limits import PeriodKind, bounds
from limits.enforcer import Enforcer, Mode, OnStoreError
from limits.errors import StoreTimeout
from limits.money import ceil_div
from limits.periods import Period
from limits.ports import Principal, UserLimits
from limits.store.memory import MemoryCounterStore
from proxy.app import STORES
from tests.conftest import FakeClock
from tests.limits.enforcer_fakes import FakeDirectory, RecordingSink
from tests.proxy.conftest import Proxy, StartProxy, unused_port_url

PATH = "/v1/chat/completions"
CONTENT = "x" * 400  # the estimate counts 404 characters (with the role "user"): 101 tokens
FAKE_CALL_MICROS = 80 * 1 + 20 // 2 + 50 * 2  # the fake upstream's usage at test-model's price


def _body(max_tokens: int | None = 50, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "test-model",
        "messages": [{"role": "user", "content": CONTENT}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body | extra


async def _reserve_proxy(start_proxy: StartProxy, **over: Any) -> Proxy:
    proxy = await start_proxy(enforcement={"mode": "reserve"} | over.pop("enforcement", {}), **over)
    await proxy.set_limit(1_000_000)
    return proxy


async def _reserved(proxy: Proxy) -> int:
    period = bounds(PeriodKind.MONTH, proxy.clock.now())
    _spent, reserved = await proxy.app[STORES].counters.read(proxy.user_id, period)
    return reserved


async def _post(proxy: Proxy, body: dict[str, Any]) -> int:
    async with proxy.client.post(PATH, json=body, headers=proxy.auth()) as response:
        await response.read()
        return response.status


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll ``check()`` every 10 ms until it holds; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def _until_seen(proxy: Proxy) -> None:
    """Until the upstream has the call (so its reservation is held)."""

    async def seen() -> bool:
        return bool(proxy.upstream.seen)

    await _eventually(seen)


async def _until_charged(proxy: Proxy) -> None:
    """Until the call's handler settled it: one row in the ledger."""

    async def charged() -> bool:
        return (await proxy.ledger())[1] >= 1

    await _eventually(charged)


async def test_estimate_is_reserved_while_in_flight_and_bounds_the_charge(
    start_proxy: StartProxy,
) -> None:
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.hang = True
    call = asyncio.create_task(_post(proxy, _body()))
    await _until_seen(proxy)
    estimate = ceil_div(404, 4) * 1 + 50 * 2
    assert await _reserved(proxy) == estimate
    proxy.upstream.released.set()
    assert await call == 200
    await proxy.drain()
    assert await _reserved(proxy) == 0
    assert await proxy.ledger() == (FAKE_CALL_MICROS, 1)
    assert estimate >= FAKE_CALL_MICROS


@pytest.mark.parametrize(
    ("max_tokens", "cap", "extra", "output_tokens"),
    [
        (None, 32_768, {}, 32_768),
        (None, 1_000, {}, 1_000),
        (20_000, 1_000, {}, 20_000),
        (50, 32_768, {"n": 3}, 150),
        (None, 1_000, {"n": 2}, 2_000),
    ],
)
async def test_output_estimate_is_the_request_cap_else_the_configured_cap(
    start_proxy: StartProxy,
    max_tokens: int | None,
    cap: int,
    extra: dict[str, Any],
    output_tokens: int,
) -> None:
    """test-model has no known maximum output: the configured cap stands in for it, and a
    client's own ``max_tokens`` is used as it is, even above the cap; per choice (``n``)."""
    proxy = await _reserve_proxy(start_proxy, enforcement={"max_estimate_output_tokens": cap})
    proxy.upstream.hang = True
    call = asyncio.create_task(_post(proxy, _body(max_tokens, **extra)))
    await _until_seen(proxy)
    assert await _reserved(proxy) == 101 + 2 * output_tokens
    proxy.upstream.released.set()
    assert await call == 200


async def test_upstream_http_error_releases(start_proxy: StartProxy) -> None:
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.status = 500
    assert await _post(proxy, _body()) == 500
    assert await _reserved(proxy) == 0
    assert await proxy.ledger() == (0, 0)


async def test_unreachable_upstream_releases(start_proxy: StartProxy) -> None:
    over = {"upstreams": {"openai": {"base_url": unused_port_url()}}}
    proxy = await _reserve_proxy(start_proxy, **over)
    assert await _post(proxy, _body()) == 502
    assert await _reserved(proxy) == 0


async def test_upstream_timeout_releases(start_proxy: StartProxy) -> None:
    proxy = await _reserve_proxy(start_proxy, upstreams={"openai": {"timeout_s": 0.2}})
    proxy.upstream.hang = True
    assert await _post(proxy, _body()) == 504
    assert await _reserved(proxy) == 0


async def test_unreadable_upstream_answer_releases(start_proxy: StartProxy) -> None:
    """The proxy fails reading the body (a gzip header on plain JSON): 502, and released."""
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.response_headers = {"Content-Encoding": "gzip"}
    assert await _post(proxy, _body()) == 502
    assert await _reserved(proxy) == 0


async def test_client_gone_mid_request_releases(start_proxy: StartProxy) -> None:
    """aiohttp's test server cancels a handler whose client left (``handler_cancellation``):
    this is the cancellation path. ``spend-proxy serve`` does not cancel; that path (the call
    completes and is charged) runs in ``tests/integration/test_reserve_redis.py``."""
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.hang = True
    call = asyncio.create_task(_post(proxy, _body()))
    await _until_seen(proxy)
    assert await _reserved(proxy) > 0
    call.cancel()  # the client drops the connection while the upstream works
    with pytest.raises(asyncio.CancelledError):
        await call

    async def released() -> bool:
        return await _reserved(proxy) == 0

    await _eventually(released)
    proxy.upstream.released.set()


async def test_client_gone_mid_stream_settles_with_an_estimate(start_proxy: StartProxy) -> None:
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.chunk_delay_s = 0.05
    async with proxy.client.post(PATH, json=_body(stream=True), headers=proxy.auth()) as response:
        assert response.status == 200
        await response.content.readany()
        response.close()
    await _until_charged(proxy)
    assert await _reserved(proxy) == 0
    [row] = await proxy.rows()
    assert row["estimated"]


async def test_upstream_cut_mid_stream_settles_with_an_estimate(start_proxy: StartProxy) -> None:
    proxy = await _reserve_proxy(start_proxy)
    proxy.upstream.cut_after_chunks = 2
    async with proxy.client.post(PATH, json=_body(stream=True), headers=proxy.auth()) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # the proxy truncates the client's stream
            await response.read()
    await _until_charged(proxy)
    assert await _reserved(proxy) == 0


async def test_an_unsettled_reservation_expires_after_its_ttl(start_proxy: StartProxy) -> None:
    """What a dead process leaves behind stops counting after ``reservation_ttl_s``."""
    proxy = await _reserve_proxy(start_proxy, enforcement={"reservation_ttl_s": 30})
    proxy.upstream.hang = True
    call = asyncio.create_task(_post(proxy, _body()))
    await _until_seen(proxy)
    assert await _reserved(proxy) > 0
    proxy.clock.advance(31)
    assert await _reserved(proxy) == 0
    proxy.upstream.released.set()
    assert await call == 200


async def test_reservations_refuse_near_the_limit(start_proxy: StartProxy) -> None:
    """With 1,000 micros left, one call holding its 65,637-micro estimate blocks the next."""
    proxy = await _reserve_proxy(start_proxy)
    await proxy.set_limit(1_000)
    proxy.upstream.hang = True
    first = asyncio.create_task(_post(proxy, _body(None)))
    await _until_seen(proxy)
    assert await _post(proxy, _body(None)) == 429
    proxy.upstream.released.set()
    assert await first == 200
    await proxy.drain()
    assert await _reserved(proxy) == 0


class _LostReplyCounters(MemoryCounterStore):
    """RESERVE runs, then its reply is lost: what a Redis read timeout looks like."""

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        await super().reserve(user_id, period, reservation_id, amount_micros, limit_micros, ttl_s)
        raise StoreTimeout("the reply was lost")


@pytest.mark.parametrize("on_store_error", list(OnStoreError))
async def test_a_reservation_whose_reply_was_lost_is_released(
    clock: FakeClock, on_store_error: OnStoreError
) -> None:
    """Else it would hold budget for ``reservation_ttl_s`` (600 s by default)."""
    counters = _LostReplyCounters(clock)
    directory = FakeDirectory(limits={7: UserLimits(1_000)})
    enforcer = Enforcer(
        directory=directory,
        counters=counters,
        sink=RecordingSink(),
        clock=clock,
        mode=Mode.RESERVE,
        on_store_error=on_store_error,
    )
    principal = Principal(user_id=7, user_name="bob", key_id=1)
    if on_store_error is OnStoreError.DENY:
        with pytest.raises(StoreTimeout):
            await enforcer.admit(principal, 500)
    else:
        assert (await enforcer.admit(principal, 500)).store_error
    month = bounds(PeriodKind.MONTH, clock.now())
    assert await counters.read(7, month) == (0, 0)


class _StuckReplyCounters(MemoryCounterStore):
    """RESERVE runs, then its reply never comes (the caller is cancelled while waiting)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.reserved = asyncio.Event()

    async def reserve(
        self,
        user_id: int,
        period: Period,
        reservation_id: str,
        amount_micros: int,
        limit_micros: int | None,
        ttl_s: float,
    ) -> tuple[bool, int, int]:
        await super().reserve(user_id, period, reservation_id, amount_micros, limit_micros, ttl_s)
        self.reserved.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_an_admission_cancelled_while_reserving_is_released(clock: FakeClock) -> None:
    """A handler cancelled mid-admission (aiohttp's handler cancellation, shutdown)."""
    counters = _StuckReplyCounters(clock)
    enforcer = Enforcer(
        directory=FakeDirectory(limits={7: UserLimits(1_000)}),
        counters=counters,
        sink=RecordingSink(),
        clock=clock,
        mode=Mode.RESERVE,
    )
    admit = asyncio.create_task(enforcer.admit(Principal(7, "bob", 1), 500))
    await counters.reserved.wait()
    admit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admit
    assert await counters.read(7, bounds(PeriodKind.MONTH, clock.now())) == (0, 0)
