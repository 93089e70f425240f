"""Limit queries: the limit config row, per-user and per-group overrides, and the revision.

Rules
1. Functions take an open ``AsyncConnection`` (``SqlStore`` owns transactions); none commits.
2. ``meta.revision`` changes with every admin write (:func:`bump_revision`, called by the
   store in the writing transaction), so per-process caches above the ``Directory`` port notice
   any change, including one made by the CLI with no server running (docs/design.md).
3. Clearing an override that does not exist raises ``NotFound`` (SPEC §5: DELETE -> 404).
"""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from limits.errors import NotFound, StoreError
from limits.periods import PeriodKind
from limits.ports import UserLimits
from limits.scopes import LimitConfig
from limits.store.schema import group_limits, groups, limit_config, memberships, meta, user_limits
from limits.store.schema import users as users_table
from limits.store.sql_accounts import group_id, user_id
from limits.store.sql_engine import upsert_insert

__all__ = [
    "bump_revision",
    "get_limit_config",
    "get_user_limits",
    "revision",
    "set_group_limit",
    "set_limit_config",
    "set_user_limit",
    "user_overrides",
]


async def revision(conn: AsyncConnection) -> int:
    found = await conn.scalar(select(meta.c.revision).where(meta.c.id == 1))
    if found is None:
        raise StoreError("the meta row is missing: run `spend-proxy migrate`")
    return int(found)


async def bump_revision(conn: AsyncConnection) -> None:
    await conn.execute(update(meta).where(meta.c.id == 1).values(revision=meta.c.revision + 1))


async def get_limit_config(conn: AsyncConnection) -> LimitConfig:
    row = (await conn.execute(select(limit_config).where(limit_config.c.id == 1))).first()
    if row is None:
        raise StoreError("the limit_config row is missing: run `spend-proxy migrate`")
    return LimitConfig(
        enabled=bool(row.enabled),
        period=PeriodKind(row.period),
        default_limit_micros=row.default_limit_micros,
    )


async def set_limit_config(conn: AsyncConnection, config: LimitConfig) -> None:
    await conn.execute(
        update(limit_config)
        .where(limit_config.c.id == 1)
        .values(
            enabled=config.enabled,
            period=config.period.value,
            default_limit_micros=config.default_limit_micros,
        )
    )


async def get_user_limits(conn: AsyncConnection, uid: int) -> UserLimits:
    """The user's own override and those of their groups that have one."""
    own = await conn.scalar(select(user_limits.c.limit_micros).where(user_limits.c.user_id == uid))
    query = (
        select(groups.c.name, group_limits.c.limit_micros)
        .join_from(memberships, groups, memberships.c.group_id == groups.c.id)
        .join(group_limits, group_limits.c.group_id == groups.c.id)
        .where(memberships.c.user_id == uid)
    )
    found = {name: int(limit) for name, limit in await conn.execute(query)}
    return UserLimits(
        user_limit_micros=None if own is None else int(own), group_limits_micros=found
    )


async def set_user_limit(conn: AsyncConnection, user: str, limit_micros: int | None) -> None:
    """Set (or, with None, clear) a live user's override. Raises ``NotFound``."""
    uid = await user_id(conn, user)
    if limit_micros is None:
        result = await conn.execute(delete(user_limits).where(user_limits.c.user_id == uid))
        if result.rowcount == 0:
            raise NotFound("limit of user", user)
        return
    stmt = upsert_insert(conn, user_limits).values(user_id=uid, limit_micros=limit_micros)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[user_limits.c.user_id], set_={"limit_micros": limit_micros}
        )
    )


async def set_group_limit(conn: AsyncConnection, group: str, limit_micros: int | None) -> None:
    """Set (or, with None, clear) a group's override. Raises ``NotFound``."""
    gid = await group_id(conn, group)
    if limit_micros is None:
        result = await conn.execute(delete(group_limits).where(group_limits.c.group_id == gid))
        if result.rowcount == 0:
            raise NotFound("limit of group", group)
        return
    stmt = upsert_insert(conn, group_limits).values(group_id=gid, limit_micros=limit_micros)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[group_limits.c.group_id], set_={"limit_micros": limit_micros}
        )
    )


async def user_overrides(conn: AsyncConnection) -> list[tuple[str, int]]:
    """``(user name, limit_micros)`` for every live user with an override, by name."""
    query = (
        select(users_table.c.name, user_limits.c.limit_micros)
        .join_from(user_limits, users_table, user_limits.c.user_id == users_table.c.id)
        .where(users_table.c.deleted_at.is_(None))
        .order_by(users_table.c.name)
    )
    return [(name, int(limit)) for name, limit in await conn.execute(query)]
