"""Fakes implementing ``limits.ports`` Protocols for the proxy tests (httpcore ``MockBackend``)."""

from __future__ import annotations

from dataclasses import dataclass

from limits import LimitConfig, StoreUnavailable
from limits.ports import Directory, Principal, UserLimits


@dataclass
class FlakyDirectory:
    """A ``Directory`` over a real one that can be switched to failing: ``down`` raises
    ``StoreUnavailable`` (an outage), ``broken`` raises ``RuntimeError`` (a bug)."""

    inner: Directory
    down: bool = False
    broken: bool = False

    def _check(self) -> None:
        if self.broken:
            raise RuntimeError("a bug in the directory")
        if self.down:
            raise StoreUnavailable("directory down (fake)")

    async def principal_for_key(self, key_hash: str) -> Principal | None:
        self._check()
        return await self.inner.principal_for_key(key_hash)

    async def limit_config(self) -> LimitConfig:
        self._check()
        return await self.inner.limit_config()

    async def user_limits(self, user_id: int) -> UserLimits:
        self._check()
        return await self.inner.user_limits(user_id)

    async def revision(self) -> int:
        self._check()
        return await self.inner.revision()
