"""``AdminService``: the one service layer behind the CLI and the admin HTTP API (SPEC §5, §6).

Rules
1. Every admin operation lives here once; the CLI and ``proxy/admin.py`` only parse input and
   render the results (``limits.admin_results`` holds the JSON shapes).
2. Input is validated here, before any write, and a bad value raises ``InvalidValue`` naming the
   field: names are 1-64 characters of ``[A-Za-z0-9._@-]``; limits are ints from 0 to
   ``MAX_STORED_INT`` (bools are not ints here); key ids are ints from 1 to ``MAX_STORED_INT``;
   periods are ``day`` / ``week`` / ``month``. ``MAX_STORED_INT`` is the largest value a
   BIGINT column holds: a larger one would fail inside the store instead of naming the field.
3. Missing users, groups, keys and overrides raise ``NotFound``; duplicates ``AlreadyExists``.
   Creating a user in a group that does not exist raises ``NotFound`` and creates nothing: a
   typo must not silently invent a group (create the group first).
4. Time comes from the injected ``Clock``; the spend of the status comes from the injected
   ``spent(user_id, period)`` (the live counter in the server, the ledger in the CLI).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from limits.admin_results import (
    CreatedKey,
    GroupOverride,
    LimitsOverview,
    SpendReport,
    SpendRow,
    UserOverride,
)
from limits.errors import InvalidValue
from limits.keys import display_prefix, generate_key, hash_key
from limits.periods import Period, PeriodKind, bounds
from limits.ports import AccountsStore, Clock, GroupRecord, KeyRecord, UserRecord
from limits.scopes import LimitConfig, resolve
from limits.status import SpendStatus, spend_status

__all__ = ["MAX_STORED_INT", "AdminService", "SpentFn", "validate_limit", "validate_name"]

SpentFn = Callable[[int, Period], Awaitable[int]]

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_LABEL_MAX = 200
MAX_STORED_INT = 2**63 - 1  # SQL BIGINT (rule 2)
_CONFIG_FIELDS = ("enabled", "period", "default_limit_micros")
_WHICH = ("current", "previous")
_GROUP_BY = ("user", "model", "group")


def validate_name(value: object, field: str = "name") -> str:
    """Return ``value`` if it is a valid user or group name, else raise ``InvalidValue``."""
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise InvalidValue(field, "must be 1-64 characters of letters, digits and . _ @ -")
    return value


def validate_limit(value: object, field: str = "limit_micros") -> int:
    """Return ``value`` if it is an int in [0, ``MAX_STORED_INT``] (micro-dollars), else raise
    ``InvalidValue``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STORED_INT:
        raise InvalidValue(field, f"must be an integer from 0 to {MAX_STORED_INT} (micro-dollars)")
    return value


def _validate_label(value: object) -> str | None:
    if value is None:
        return None
    # NUL: PostgreSQL text cannot hold it (the store would fail instead of naming the field).
    if not isinstance(value, str) or len(value) > _LABEL_MAX or "\x00" in value:
        raise InvalidValue("label", f"must be text of at most {_LABEL_MAX} characters, no NUL")
    return value


def _choice(value: object, field: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidValue(field, f"must be one of {', '.join(choices)}")
    return value


def _updated_config(config: LimitConfig, changes: Mapping[str, object]) -> LimitConfig:
    unknown = sorted(set(changes) - set(_CONFIG_FIELDS))
    if unknown:
        raise InvalidValue(unknown[0], f"unknown field; expected {', '.join(_CONFIG_FIELDS)}")
    enabled, period, default = config.enabled, config.period, config.default_limit_micros
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            raise InvalidValue("enabled", "must be true or false")
        enabled = changes["enabled"]
    if "period" in changes:
        period = PeriodKind(_choice(changes["period"], "period", [k.value for k in PeriodKind]))
    if "default_limit_micros" in changes:
        value = changes["default_limit_micros"]
        default = None if value is None else validate_limit(value, "default_limit_micros")
    return LimitConfig(enabled=enabled, period=period, default_limit_micros=default)


class AdminService:
    """Admin operations over an ``AccountsStore`` (see the module docstring for the rules)."""

    def __init__(self, store: AccountsStore, *, clock: Clock, spent: SpentFn) -> None:
        self._store = store
        self._clock = clock
        self._spent = spent

    # -- users and groups ------------------------------------------------------------------

    async def create_user(self, name: str, groups: Sequence[str] = ()) -> UserRecord:
        """Create a user, optionally in existing groups. Raises ``InvalidValue``,
        ``AlreadyExists``, ``NotFound`` (an unknown group: nothing is created)."""
        validate_name(name)
        for group in groups:
            validate_name(group, "groups")
        return await self._store.create_user(name, list(groups), self._clock.now())

    async def list_users(self) -> list[UserRecord]:
        return await self._store.list_users()

    async def get_user(self, name: str) -> UserRecord:
        return await self._store.get_user(name)

    async def delete_user(self, name: str) -> None:
        """Delete a user: revokes their keys, keeps their ledger rows. Raises ``NotFound``."""
        await self._store.delete_user(name, self._clock.now())

    async def create_group(self, name: str) -> GroupRecord:
        validate_name(name)
        return await self._store.create_group(name, self._clock.now())

    async def list_groups(self) -> list[GroupRecord]:
        return await self._store.list_groups()

    async def get_group(self, name: str) -> GroupRecord:
        return await self._store.get_group(name)

    async def delete_group(self, name: str) -> None:
        """Delete a group with its memberships and override. Raises ``NotFound``."""
        await self._store.delete_group(name)

    async def add_member(self, group: str, user: str) -> GroupRecord:
        """Put ``user`` in ``group`` (idempotent); returns the group. Raises ``NotFound``."""
        await self._store.add_member(group, user)
        return await self._store.get_group(group)

    async def remove_member(self, group: str, user: str) -> None:
        """Raises ``NotFound`` also when ``user`` is not a member of ``group``."""
        await self._store.remove_member(group, user)

    # -- keys ------------------------------------------------------------------------------

    async def create_key(self, user: str, label: str | None = None) -> CreatedKey:
        """A new key for ``user``; the result is the only place its plaintext ever appears."""
        label = _validate_label(label)
        key = generate_key()
        record = await self._store.create_key(
            user, hash_key(key), display_prefix(key), label, self._clock.now()
        )
        return CreatedKey(record=record, key=key)

    async def list_keys(self, user: str) -> list[KeyRecord]:
        return await self._store.list_keys(user)

    async def revoke_key(self, key_id: int) -> None:
        """Revoke a key (idempotent for a revoked key). Raises ``NotFound``."""
        if isinstance(key_id, bool) or not isinstance(key_id, int):
            raise InvalidValue("id", "must be a positive integer key id")
        if not 1 <= key_id <= MAX_STORED_INT:
            raise InvalidValue("id", f"must be a key id from 1 to {MAX_STORED_INT}")
        await self._store.revoke_key(key_id, self._clock.now())

    # -- limits ----------------------------------------------------------------------------

    async def limits(self) -> LimitsOverview:
        """The config and every override (``GET /limits``)."""
        config = await self._store.limit_config()
        users = tuple(UserOverride(n, m) for n, m in await self._store.user_overrides())
        groups = tuple(
            GroupOverride(g.name, g.limit_micros, g.member_count)
            for g in await self._store.list_groups()
            if g.limit_micros is not None
        )
        return LimitsOverview(config, users, groups)

    async def update_limit_config(self, changes: Mapping[str, object]) -> LimitConfig:
        """Change only the given fields of ``enabled`` / ``period`` / ``default_limit_micros``
        (``None`` for the default means "no default"). Returns the new config."""
        config = _updated_config(await self._store.limit_config(), changes)
        await self._store.set_limit_config(config)
        return config

    async def set_user_limit(self, name: str, limit_micros: int) -> UserOverride:
        limit = validate_limit(limit_micros)
        await self._store.set_user_limit(name, limit)
        return UserOverride(name, limit)

    async def clear_user_limit(self, name: str) -> None:
        """Raises ``NotFound`` for an unknown user or one without an override."""
        await self._store.set_user_limit(name, None)

    async def set_group_limit(self, name: str, limit_micros: int) -> GroupOverride:
        limit = validate_limit(limit_micros)
        await self._store.set_group_limit(name, limit)
        group = await self._store.get_group(name)
        return GroupOverride(name, limit, group.member_count)

    async def clear_group_limit(self, name: str) -> None:
        """Raises ``NotFound`` for an unknown group or one without an override."""
        await self._store.set_group_limit(name, None)

    # -- spend -----------------------------------------------------------------------------

    async def usage(self, name: str) -> SpendStatus:
        """The user's status for the current period (``GET /users/{name}/usage``)."""
        user = await self._store.get_user(name)
        config = await self._store.limit_config()
        overrides = await self._store.user_limits(user.id)
        resolution = resolve(config, overrides.user_limit_micros, overrides.group_limits_micros)
        period = bounds(config.period, self._clock.now())
        spent = await self._spent(user.id, period)
        return spend_status(user.name, config, resolution, period, spent)

    async def spend(self, period: str = "current", group_by: str = "user") -> SpendReport:
        """Ledger totals for the current or previous period of the configured kind."""
        which = _choice(period, "period", _WHICH)
        group_by = _choice(group_by, "group_by", _GROUP_BY)
        config = await self._store.limit_config()
        window = bounds(config.period, self._clock.now())
        if which == "previous":
            window = bounds(config.period, window.start_at - timedelta(microseconds=1))
        rows = await self._store.spend(window, group_by)
        return SpendReport(which, window, group_by, tuple(SpendRow(*row) for row in rows))
