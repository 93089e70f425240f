"""The admin API's JSON shapes as pydantic models: request bodies, query strings and answers.

Rules
1. Request models (``*Body``, ``*Query``) are parsed strictly (no coercion: ``"1"`` is not an
   int, ``true`` is not an int) and reject unknown fields, so a typo is a 400 naming the field.
   They check *shape* only. The *values* (name syntax, limits >= 0, periods, label length) are
   checked once, by ``limits.admin.AdminService``; those constraints appear here solely as
   JSON-schema annotations (:func:`documented`), so the OpenAPI document states them and
   ``tests/proxy/test_openapi.py`` proves the annotations agree with the service.
2. Answer models are never used to build answers: ``limits.admin_results`` builds every JSON
   object (shared with ``spend-proxy ... --json``). They exist to generate the OpenAPI document,
   and they forbid extra fields, so a serializer that grows a field fails the schema tests
   until the model (and so the document) says so.
3. Money is integer micro-dollars (``*_micros``); times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from limits.admin import MAX_STORED_INT

__all__ = [
    "NAME_SCHEMA",
    "CreatedKey",
    "ErrorBody",
    "Group",
    "GroupLimit",
    "Key",
    "LimitBody",
    "LimitConfig",
    "LimitConfigBody",
    "Limits",
    "NewGroupBody",
    "NewKeyBody",
    "NewUserBody",
    "SpendQuery",
    "SpendReport",
    "Status",
    "User",
    "UserLimit",
    "documented",
    "omittable",
]

# What ``limits.admin.validate_name`` accepts, as a JSON-schema (ECMA 262) pattern.
NAME_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"}
_MICROS: dict[str, Any] = {"minimum": 0, "maximum": MAX_STORED_INT}
_INTEGER = "Micro-dollars, as a JSON integer literal: `5.0` is refused (money is never a float)."


def documented(**schema: Any) -> Any:
    """A required field whose value constraints are documented, not validated here (rule 1)."""
    return Field(json_schema_extra=schema)


def omittable(**schema: Any) -> Any:
    """A field that may be left out but not be null. Its default, ``None``, is never validated
    (pydantic does not validate defaults), so an explicit ``null`` is still a type error; it
    only means "not given" (read ``model_dump(exclude_unset=True)``), and it is kept out of the
    document. (``bool | None`` would accept ``null``; ``bool | SkipJsonSchema[None]`` would
    report errors at ``enabled.bool``.)"""

    def extra(field_schema: dict[str, Any]) -> None:
        field_schema.pop("default", None)
        field_schema.update(schema)

    return Field(default=None, json_schema_extra=extra)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- request bodies and query strings --------------------------------------------------------


class NewUserBody(_Request):
    name: str = documented(**NAME_SCHEMA)
    groups: list[str] = Field(default=[], json_schema_extra={"items": NAME_SCHEMA})


class NewGroupBody(_Request):
    name: str = documented(**NAME_SCHEMA)


class NewKeyBody(_Request):
    """An optional label: at most 200 characters, no NUL (PostgreSQL text cannot hold it)."""

    label: str | None = Field(
        default=None,
        json_schema_extra={
            "anyOf": [
                {"type": "string", "maxLength": 200, "pattern": "^[^\\u0000]*$"},
                {"type": "null"},
            ]
        },
    )


class LimitConfigBody(_Request):
    """``PUT /limits``: only the fields given change; ``default_limit_micros: null`` = none."""

    enabled: bool = omittable()
    period: str = omittable(enum=["day", "week", "month"])
    default_limit_micros: int | None = omittable(
        anyOf=[{"type": "integer", **_MICROS}, {"type": "null"}],
        description=_INTEGER + " `null`: no default limit.",
    )


class LimitBody(_Request):
    limit_micros: int = documented(**_MICROS, description=_INTEGER)


class SpendQuery(_Request):
    period: str = Field(default="current", json_schema_extra={"enum": ["current", "previous"]})
    group_by: str = Field(default="user", json_schema_extra={"enum": ["user", "model", "group"]})


# -- answers ---------------------------------------------------------------------------------


class User(_Answer):
    id: int
    name: str
    groups: list[str]
    created_at: datetime


class Group(_Answer):
    id: int
    name: str
    member_count: int
    limit_micros: int | None
    created_at: datetime


class Key(_Answer):
    """A key as listed: never its secret."""

    id: int
    user: str
    prefix: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedKey(_Answer):
    """A new key: the only answer that ever holds the plaintext ``key``."""

    id: int
    key: str
    prefix: str
    label: str | None
    created_at: datetime


class LimitConfig(_Answer):
    enabled: bool
    period: Literal["day", "week", "month"]
    default_limit_micros: int | None


class UserLimit(_Answer):
    user: str
    limit_micros: int


class GroupLimit(_Answer):
    group: str
    limit_micros: int
    member_count: int


class Limits(LimitConfig):
    users: list[UserLimit]
    groups: list[GroupLimit]


class Status(_Answer):
    """A user's spend in the current period (unlimited: the limit fields are null)."""

    user: str
    enabled: bool
    limit_micros: int | None
    source: Literal["user", "group", "default"] | None
    source_group: str | None
    period: Literal["day", "week", "month"]
    period_start: datetime
    period_end: datetime
    spent_micros: int
    remaining_micros: int | None


class _RowTotals(_Answer):
    cost_micros: int
    calls: int


class UserRow(_RowTotals):
    user: str


class ModelRow(_RowTotals):
    model: str


class GroupRow(_RowTotals):
    group: str


class SpendReport(_Answer):
    """Ledger totals, costliest first; each row is keyed by ``group_by``."""

    which: Literal["current", "previous"]
    period: Literal["day", "week", "month"]
    period_start: datetime
    period_end: datetime
    group_by: Literal["user", "model", "group"]
    rows: list[UserRow | ModelRow | GroupRow]


class ErrorDetail(_Answer):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(_Answer):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail
