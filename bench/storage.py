"""Scratch storage for one benchmark run on the machine's shared Redis and PostgreSQL.

Rules (the services are shared with tests and other work on the machine)
1. PostgreSQL: a fresh database ``bench_<random hex>`` is created and, at the end, dropped
   (``WITH (FORCE)``, which ends our own lingering connections). No other database is touched.
2. Redis: the run claims one numbered database that is empty, by writing a marker key with
   ``SET NX``, highest number first (tests use db 0). At the end it empties that database only
   if the marker is still ours. Never ``FLUSHALL``, never db 0, never a server restart.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis

__all__ = ["PostgresDatabase", "RedisDatabase", "StorageError"]

MARKER_KEY = "spend-proxy-bench:owner"


class StorageError(RuntimeError):
    """Redis or PostgreSQL refused or was unreachable (the cause is chained)."""


@dataclass
class PostgresDatabase:
    """A scratch database; ``url`` is what spend-proxy's ``[storage] database_url`` gets."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    name: str = ""

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    async def _execute(self, statement: str) -> None:
        conn: Any = await asyncpg.connect(
            host=self.host, port=self.port, user=self.user, database="postgres", timeout=10
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def _admin(self, statement: str) -> None:
        try:
            asyncio.run(self._execute(statement))
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            raise StorageError(f"PostgreSQL: {statement}: {exc}") from exc

    def create(self) -> None:
        self.name = f"bench_{secrets.token_hex(6)}"
        self._admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        if self.name:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.name = ""


@dataclass
class RedisDatabase:
    """A claimed, empty numbered Redis database; ``url`` selects it."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = -1
    token: str = ""

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    def _client(self, db: int) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=db, socket_timeout=5)

    def claim(self) -> None:
        self.token = secrets.token_hex(8)
        try:
            with self._client(0) as probe:
                count = int(probe.config_get("databases").get("databases", "16"))
            for db in range(count - 1, 0, -1):
                with self._client(db) as client:
                    if client.dbsize() == 0 and client.set(MARKER_KEY, self.token, nx=True):
                        self.db = db
                        return
        except redis.RedisError as exc:
            raise StorageError(f"Redis: {exc}") from exc
        raise StorageError(f"no empty Redis database (1..{count - 1}) to borrow")

    def release(self) -> None:
        if self.db < 1:
            return
        try:
            with self._client(self.db) as client:
                if client.get(MARKER_KEY) == self.token.encode():
                    client.flushdb()
        except redis.RedisError as exc:
            raise StorageError(f"Redis: could not empty db {self.db}: {exc}") from exc
        self.db = -1
