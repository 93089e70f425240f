"""Account queries: users, groups, memberships and API keys, each over an open connection.

Rules
1. Every function takes an ``AsyncConnection`` inside a transaction opened by ``SqlStore``;
   none commits. Writers are called inside a write transaction that also bumps the revision.
2. Only *live* users (``deleted_at IS NULL``) can be named; a deleted user is invisible here
   except through their ledger rows. Deleting a user revokes their keys, drops memberships and
   their override, and keeps the ledger (SPEC §5).
3. Missing names raise ``NotFound``; duplicate names ``AlreadyExists`` (also when a concurrent
   writer wins the race: the unique index decides, and its error is translated here).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from limits.errors import AlreadyExists, NotFound
from limits.ports import GroupRecord, KeyRecord, Principal, UserRecord
from limits.store.schema import api_keys, group_limits, groups, memberships, user_limits, users
from limits.store.sql_engine import upsert_insert

__all__ = [
    "add_member",
    "create_group",
    "create_key",
    "create_user",
    "delete_group",
    "delete_user",
    "get_group",
    "get_user",
    "group_id",
    "list_groups",
    "list_keys",
    "list_users",
    "principal_for_key",
    "remove_member",
    "revoke_key",
    "user_id",
]

_LIVE = users.c.deleted_at.is_(None)


async def user_id(conn: AsyncConnection, name: str) -> int:
    """The id of the live user ``name``. Raises ``NotFound``."""
    found = await conn.scalar(select(users.c.id).where(users.c.name == name, _LIVE))
    if found is None:
        raise NotFound("user", name)
    return int(found)


async def group_id(conn: AsyncConnection, name: str) -> int:
    """The id of group ``name``. Raises ``NotFound``."""
    found = await conn.scalar(select(groups.c.id).where(groups.c.name == name))
    if found is None:
        raise NotFound("group", name)
    return int(found)


async def principal_for_key(conn: AsyncConnection, key_hash: str) -> Principal | None:
    query = (
        select(api_keys.c.id, users.c.id, users.c.name)
        .join_from(api_keys, users, api_keys.c.user_id == users.c.id)
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None), _LIVE)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else Principal(user_id=row[1], user_name=row[2], key_id=row[0])


async def _groups_of(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, list[str]]:
    query = (
        select(memberships.c.user_id, groups.c.name)
        .join_from(memberships, groups, memberships.c.group_id == groups.c.id)
        .where(memberships.c.user_id.in_(user_ids))
        .order_by(groups.c.name)
    )
    found: dict[int, list[str]] = {uid: [] for uid in user_ids}
    for uid, name in await conn.execute(query):
        found[uid].append(name)
    return found


async def list_users(conn: AsyncConnection) -> list[UserRecord]:
    """Live users ordered by name, each with their group names (sorted)."""
    rows = (await conn.execute(select(users).where(_LIVE).order_by(users.c.name))).all()
    names = await _groups_of(conn, [row.id for row in rows])
    return [UserRecord(row.id, row.name, tuple(names[row.id]), row.created_at) for row in rows]


async def get_user(conn: AsyncConnection, name: str) -> UserRecord:
    uid = await user_id(conn, name)
    row = (await conn.execute(select(users).where(users.c.id == uid))).one()
    names = await _groups_of(conn, [uid])
    return UserRecord(uid, row.name, tuple(names[uid]), row.created_at)


async def create_user(
    conn: AsyncConnection, name: str, group_names: Sequence[str], at: datetime
) -> UserRecord:
    """Create a live user in existing groups. Raises ``NotFound`` (a group), ``AlreadyExists``."""
    group_ids = [await group_id(conn, group) for group in dict.fromkeys(group_names)]
    if await conn.scalar(select(users.c.id).where(users.c.name == name, _LIVE)) is not None:
        raise AlreadyExists("user", name)
    try:
        uid = await conn.scalar(
            insert(users).values(name=name, created_at=at).returning(users.c.id)
        )
    except IntegrityError as exc:
        raise AlreadyExists("user", name) from exc
    if group_ids:
        await conn.execute(
            insert(memberships), [{"group_id": gid, "user_id": uid} for gid in group_ids]
        )
    return await get_user(conn, name)


async def delete_user(conn: AsyncConnection, name: str, at: datetime) -> None:
    """Soft-delete: revoke keys, drop memberships and override, keep the ledger (rule 2)."""
    uid = await user_id(conn, name)
    live_keys = (api_keys.c.user_id == uid) & api_keys.c.revoked_at.is_(None)
    await conn.execute(update(api_keys).where(live_keys).values(revoked_at=at))
    await conn.execute(delete(memberships).where(memberships.c.user_id == uid))
    await conn.execute(delete(user_limits).where(user_limits.c.user_id == uid))
    await conn.execute(update(users).where(users.c.id == uid).values(deleted_at=at))


async def _groups(conn: AsyncConnection, name: str | None) -> list[GroupRecord]:
    members = (
        select(func.count())
        .select_from(memberships)
        .where(memberships.c.group_id == groups.c.id)
        .scalar_subquery()
    )
    query = (
        select(
            groups.c.id, groups.c.name, members, group_limits.c.limit_micros, groups.c.created_at
        )
        .outerjoin_from(groups, group_limits, group_limits.c.group_id == groups.c.id)
        .order_by(groups.c.name)
    )
    if name is not None:
        query = query.where(groups.c.name == name)
    rows = await conn.execute(query)
    return [GroupRecord(row[0], row[1], int(row[2]), row[3], row[4]) for row in rows]


async def list_groups(conn: AsyncConnection) -> list[GroupRecord]:
    """Every group ordered by name, with its member count and override (if any)."""
    return await _groups(conn, None)


async def get_group(conn: AsyncConnection, name: str) -> GroupRecord:
    found = await _groups(conn, name)
    if not found:
        raise NotFound("group", name)
    return found[0]


async def create_group(conn: AsyncConnection, name: str, at: datetime) -> GroupRecord:
    if await conn.scalar(select(groups.c.id).where(groups.c.name == name)) is not None:
        raise AlreadyExists("group", name)
    try:
        gid = await conn.scalar(
            insert(groups).values(name=name, created_at=at).returning(groups.c.id)
        )
    except IntegrityError as exc:
        raise AlreadyExists("group", name) from exc
    return GroupRecord(int(gid or 0), name, 0, None, at)


async def delete_group(conn: AsyncConnection, name: str) -> None:
    """Delete a group, its memberships and its override. Raises ``NotFound``."""
    gid = await group_id(conn, name)
    await conn.execute(delete(memberships).where(memberships.c.group_id == gid))
    await conn.execute(delete(group_limits).where(group_limits.c.group_id == gid))
    await conn.execute(delete(groups).where(groups.c.id == gid))


async def add_member(conn: AsyncConnection, group: str, user: str) -> None:
    """Idempotent (PUT semantics). Raises ``NotFound`` for either name."""
    gid, uid = await group_id(conn, group), await user_id(conn, user)
    stmt = upsert_insert(conn, memberships).values(group_id=gid, user_id=uid)
    await conn.execute(stmt.on_conflict_do_nothing())


async def remove_member(conn: AsyncConnection, group: str, user: str) -> None:
    """Raises ``NotFound`` for either name, or when ``user`` is not in ``group``."""
    gid, uid = await group_id(conn, group), await user_id(conn, user)
    where = (memberships.c.group_id == gid) & (memberships.c.user_id == uid)
    result = await conn.execute(delete(memberships).where(where))
    if result.rowcount == 0:
        raise NotFound("membership", f"{user} in {group}")


async def create_key(
    conn: AsyncConnection, user: str, key_hash: str, prefix: str, label: str | None, at: datetime
) -> KeyRecord:
    uid = await user_id(conn, user)
    values = {"user_id": uid, "key_hash": key_hash, "prefix": prefix, "label": label}
    try:
        kid = await conn.scalar(
            insert(api_keys).values(**values, created_at=at).returning(api_keys.c.id)
        )
    except IntegrityError as exc:  # a SHA-256 collision of two random keys: never in practice
        raise AlreadyExists("key", prefix) from exc
    return KeyRecord(int(kid or 0), user, prefix, label, at, None)


async def list_keys(conn: AsyncConnection, user: str) -> list[KeyRecord]:
    """Every key of a live user, revoked ones included, oldest first. No secrets."""
    uid = await user_id(conn, user)
    rows = await conn.execute(
        select(api_keys).where(api_keys.c.user_id == uid).order_by(api_keys.c.id)
    )
    return [
        KeyRecord(row.id, user, row.prefix, row.label, row.created_at, row.revoked_at)
        for row in rows
    ]


async def revoke_key(conn: AsyncConnection, key_id: int, at: datetime) -> None:
    """Revoke a key; revoking a revoked key changes nothing. Raises ``NotFound``."""
    found = (await conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id))).first()
    if found is None:
        raise NotFound("key", str(key_id))
    live = (api_keys.c.id == key_id) & api_keys.c.revoked_at.is_(None)
    await conn.execute(update(api_keys).where(live).values(revoked_at=at))
