"""The admin API's HTTP plumbing: what one operation is, how a request becomes its arguments,
and how domain errors become HTTP errors (SPEC §5).

Rules
1. An :class:`Operation` is one row of the route table (``proxy/admin_routes.py``): method,
   path, endpoint, success status, body / query / answer models and the error statuses it can
   answer. The aiohttp route (:func:`aiohttp_handler`) and the OpenAPI document
   (``proxy/openapi.py``) are both generated from that row, so they cannot drift apart, and the
   success status is the row's, never the endpoint's choice.
2. An endpoint is ``(AdminService, Args) -> JSON-able``: it parses nothing and renders nothing.
   The body is parsed here with the operation's strict model (``proxy/admin_models.py``), the
   query string likewise; a malformed body is 400 ``invalid_json``, a wrong field 400
   ``invalid_value`` with ``param`` naming it.
3. Domain errors translate here and only here: ``NotFound`` -> 404, ``AlreadyExists`` -> 409,
   ``InvalidValue`` -> 400 naming the field, ``StoreError`` -> 503.
4. A path segment that cannot be a name (``limits.admin.validate_name`` rejects it) names
   nothing that exists: 404, without asking the store.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from limits.admin import AdminService, validate_name
from limits.errors import AlreadyExists, InvalidValue, NotFound, StoreError
from proxy.errors import (
    InvalidJson,
    InvalidParameter,
    ProxyError,
    ResourceExists,
    ResourceNotFound,
    ServiceUnavailable,
)

__all__ = [
    "ADMIN",
    "ADMIN_PREFIX",
    "Args",
    "DomainError",
    "Endpoint",
    "Operation",
    "aiohttp_handler",
    "translate",
]

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/v1"
ADMIN = web.AppKey("admin", AdminService)

M = TypeVar("M", bound=BaseModel)
_MAX_ID_DIGITS = 20  # a key id is at most 2**63 - 1: 19 digits, one spare for leading zeros


@dataclass(frozen=True, slots=True)
class Args:
    """What an endpoint gets from its request: path segments, parsed body and query."""

    path: Mapping[str, str]
    body: BaseModel | None = None
    query: BaseModel | None = None

    def name(self, param: str) -> str:
        """The user or group name in path segment ``param``; raises ``NotFound`` (rule 4)."""
        value = self.path[param]
        try:
            return validate_name(value, param)
        except InvalidValue:
            raise NotFound(param, value) from None

    def key_id(self) -> int:
        """The key id in path segment ``id``; raises ``InvalidValue`` unless it is digits."""
        value = self.path["id"]
        # The length bound keeps int() away from its 4300-digit limit (ValueError, a 500);
        # AdminService.revoke_key checks the range.
        if not (value.isascii() and value.isdigit()) or len(value) > _MAX_ID_DIGITS:
            raise InvalidValue("id", "must be a positive integer key id")
        return int(value)

    def body_as(self, model: type[M]) -> M:
        assert isinstance(self.body, model), "the operation's body model is not the endpoint's"
        return self.body

    def query_as(self, model: type[M]) -> M:
        assert isinstance(self.query, model), "the operation's query model is not the endpoint's"
        return self.query


Endpoint = Callable[[AdminService, Args], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin route (rule 1). ``status`` 204 means no body; ``many``: a JSON array."""

    method: str
    path: str  # below ADMIN_PREFIX, in aiohttp / OpenAPI template syntax: "/users/{user}"
    endpoint: Endpoint
    summary: str
    status: int = 200
    answer: type[BaseModel] | None = None
    many: bool = False
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # besides 401 and 503, which every operation can answer

    @property
    def url(self) -> str:
        return ADMIN_PREFIX + self.path

    @property
    def operation_id(self) -> str:
        return self.endpoint.__name__


def _field(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"])


def _invalid(exc: ValidationError, where: str) -> ProxyError:
    """The first problem pydantic found, as a 400 that names the field (rule 2)."""
    error = exc.errors(include_url=False, include_input=False)[0]
    if error["type"] == "json_invalid":
        return InvalidJson(f"The {where} is not valid JSON.")
    if not error["loc"]:
        return InvalidJson(f"The {where} must be a JSON object.")
    field = _field(error)
    reasons = {"extra_forbidden": "unknown field", "missing": "field required"}
    message = reasons.get(error["type"], error["msg"])
    return InvalidParameter(field, f"{field}: {message}")


async def _body(request: web.Request, op: Operation) -> BaseModel | None:
    if op.body is None:
        return None
    raw = await request.read()
    if not op.body_required and not raw.strip():
        raw = b"{}"
    try:
        return op.body.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise _invalid(exc, "request body") from None


def _query(request: web.Request, op: Operation) -> BaseModel | None:
    if op.query is None:
        return None
    names = [name for name, _ in request.query.items()]  # keys() would drop repeats
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidParameter(repeated[0], f"{repeated[0]}: given more than once")
    try:
        return op.query.model_validate(dict(request.query), strict=True)
    except ValidationError as exc:
        raise _invalid(exc, "query string") from None


DomainError = NotFound | AlreadyExists | InvalidValue | StoreError


def translate(exc: DomainError) -> ProxyError:
    """The HTTP error for a domain error of an admin operation (rule 3)."""
    if isinstance(exc, NotFound):
        return ResourceNotFound(str(exc))
    if isinstance(exc, AlreadyExists):
        return ResourceExists(str(exc))
    if isinstance(exc, InvalidValue):
        return InvalidParameter(exc.field, str(exc))
    log.warning("admin API: store error %r", exc)
    return ServiceUnavailable("The database is unavailable; retry later.")


def _service(request: web.Request) -> AdminService:
    admin = request.config_dict.get(ADMIN)
    if admin is None:  # the app runs on injected ports without the SQL store
        raise ServiceUnavailable("The admin API needs the SQL store, which this proxy lacks.")
    return admin


def aiohttp_handler(op: Operation) -> Handler:
    """The aiohttp handler of ``op``: parse, call the endpoint, answer ``op.status``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            args = Args(request.match_info, await _body(request, op), _query(request, op))
            result = await op.endpoint(_service(request), args)
        except (NotFound, AlreadyExists, InvalidValue, StoreError) as exc:
            raise translate(exc) from exc
        if op.status == 204:
            return web.Response(status=204)
        body = orjson.dumps(result)
        return web.Response(status=op.status, body=body, content_type="application/json")

    handle.__name__ = op.operation_id
    return handle
