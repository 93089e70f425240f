"""``spend-proxy serve --workers N`` (SPEC §6, §7; ``proxy/server.py`` rule 2).

1. Shared storage (PostgreSQL + Redis): two worker processes answer on ONE port. Each process
   draws its own random request-id prefix (``proxy/request_ids.py``), so the
   ``x-spend-request-id`` of the answers tells the processes apart. SIGTERM, twice, to the whole
   process group with calls in flight: every call completes, exit status 0, the port closed,
   every charged call in the ledger.
2. Embedded storage refuses ``--workers 2``: exit status non-zero, one line on stderr.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.integration.books import ledger_rows, wait_rows
from tests.integration.conftest import Deploy
from tests.integration.load import Call, eventually, request_for
from tests.integration.processes import run_cli
from tests.integration.upstream import UsageUpstream


def _process_of(ledger_id: str) -> str:
    """The per-process prefix of a request id made from the client's ``x-request-id``:
    ``<x-request-id>-<16 hex of the process><counter>``."""
    return ledger_id.rsplit("-", 1)[1][:16]


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def _chat(session: aiohttp.ClientSession, url: str, key: str, call_id: str) -> str | None:
    """One chat call; the ledger id of a 200 answer, else None."""
    path, body = request_for(Call(call_id, 0, "ada", "chat", "gpt-4o-mini"))
    headers = {"Authorization": f"Bearer {key}", "x-request-id": call_id}
    async with session.post(url + path, json=body, headers=headers) as response:
        await response.read()
        return response.headers["x-spend-request-id"] if response.status == 200 else None


async def test_two_workers_serve_one_port_and_drain_on_repeated_sigterm(
    deploy: Deploy, upstream: UsageUpstream
) -> None:
    """SIGTERM goes to the whole process group, twice, while calls are in flight: as systemd
    does (every process of the service; the parent forwards it as well) and as an impatient
    operator does. Every in-flight call still completes, and the server exits 0."""
    deployment = await deploy(users=["ada"], replicas=0)
    server = deployment.add_replica("--workers", "2")
    await server.wait_ready()
    key = deployment.keys["ada"]
    processes: Counter[str] = Counter()
    answered: list[str] = []
    # A fresh connection per call: the kernel spreads connections over the workers.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.monotonic() + 30
        while len(processes) < 2 and time.monotonic() < deadline:
            ledger_id = await _chat(session, server.url, key, f"w-{len(answered)}")
            if ledger_id is not None:
                answered.append(ledger_id)
                processes[_process_of(ledger_id)] += 1
        assert len(processes) == 2, f"one port, two processes expected; saw {dict(processes)}"

        upstream.latency_s = 2.0  # calls still in flight when the signals come
        seen_before = upstream.requests
        # 16 connections: all on one worker has odds 2 x 2**-16 (the kernel hashes them).
        in_flight = [
            asyncio.create_task(_chat(session, server.url, key, f"slow-{n}")) for n in range(16)
        ]
        await eventually(
            lambda: upstream.requests >= seen_before + len(in_flight), 10, "calls in flight"
        )
        os.killpg(server.pid, signal.SIGTERM)
        await asyncio.sleep(0.3)
        os.killpg(server.pid, signal.SIGTERM)  # again, while the workers drain
        slow = await asyncio.gather(*in_flight)
    assert all(ledger_id is not None for ledger_id in slow), slow
    assert len({_process_of(ledger_id) for ledger_id in slow if ledger_id}) == 2
    assert await server.wait_exit(timeout_s=30) == 0, "SIGTERM must drain and exit 0"
    assert _port_closed(server.port), "a worker outlived the parent"
    answered += [ledger_id for ledger_id in slow if ledger_id]
    await wait_rows(deployment.database_url, len(answered), timeout_s=5)
    rows = {row.request_id for row in await ledger_rows(deployment.database_url)}
    assert rows == set(answered)
    print(f"[workers] answered={len(answered)}, per_process={sorted(processes.values())}")


async def test_embedded_storage_refuses_two_workers(tmp_path: Path) -> None:
    config = tmp_path / "embedded.toml"
    config.write_text(f'[storage]\nsqlite_path = "{tmp_path / "spend.db"}"\n')
    result = await asyncio.wait_for(
        run_cli("serve", "--config", str(config), "--workers", "2", "--port", "0"), 60
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("spend-proxy: error: server.workers = 2 needs shared storage")
    assert not (tmp_path / "spend.db").exists(), "refused before touching the database"
