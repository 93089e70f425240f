"""``spend-proxy serve --workers N`` (SPEC §6, §7; ``proxy/server.py`` rule 2).

1. Shared storage (PostgreSQL + Redis): two worker processes answer on ONE port. Each process
   draws its own random request-id prefix (``proxy/request_ids.py``), so the
   ``x-spend-request-id`` of the answers tells the processes apart. SIGTERM to the parent stops
   both: exit status 0, the port closed, every charged call in the ledger.
2. Embedded storage refuses ``--workers 2``: exit status non-zero, one line on stderr.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from pathlib import Path

import aiohttp

from tests.integration.books import ledger_rows, wait_rows
from tests.integration.conftest import Deploy
from tests.integration.load import Call, request_for
from tests.integration.processes import run_cli


def _process_of(ledger_id: str) -> str:
    """The per-process prefix of a request id made from the client's ``x-request-id``:
    ``<x-request-id>-<16 hex of the process><counter>``."""
    return ledger_id.rsplit("-", 1)[1][:16]


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_two_workers_serve_one_port_and_stop_on_sigterm(deploy: Deploy) -> None:
    deployment = await deploy(users=["ada"], replicas=0)
    server = deployment.add_replica("--workers", "2")
    await server.wait_ready()
    key = deployment.keys["ada"]
    processes: dict[str, int] = {}
    answered: list[str] = []
    # A fresh connection per call: the kernel spreads connections over the workers.
    connector = aiohttp.TCPConnector(force_close=True)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.monotonic() + 30
        n = 0
        while len(processes) < 2 and time.monotonic() < deadline:
            path, body = request_for(Call(f"w-{n}", 0, "ada", "chat", "gpt-4o-mini"))
            headers = {"Authorization": f"Bearer {key}", "x-request-id": f"w-{n}"}
            async with session.post(server.url + path, json=body, headers=headers) as response:
                await response.read()
                if response.status == 200:  # a worker still starting may not answer yet
                    ledger_id = response.headers["x-spend-request-id"]
                    answered.append(ledger_id)
                    process = _process_of(ledger_id)
                    processes[process] = processes.get(process, 0) + 1
            n += 1
    assert len(processes) == 2, f"one port, two processes expected; saw {processes} in {n} calls"

    server.signal(signal.SIGTERM)
    assert await server.wait_exit(timeout_s=20) == 0, "SIGTERM must drain and exit 0"
    assert _port_closed(server.port), "a worker outlived the parent"
    await wait_rows(deployment.database_url, len(answered), timeout_s=5)
    rows = {row.request_id for row in await ledger_rows(deployment.database_url)}
    assert rows == set(answered)
    print(
        f"[workers] calls={n}, answered={len(answered)}, per_process={sorted(processes.values())}"
    )


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
