"""The proxy's error tree and the one middleware that renders every error (SPEC §4).

    ProxyError(status, type, code, message, param, headers)
    ├── InvalidApiKey          401 invalid_request_error / invalid_api_key
    ├── SpendLimitExceeded     429 insufficient_quota / spend_limit_exceeded
    ├── InvalidJson            400 invalid_request_error / invalid_json
    ├── MissingModel           400 invalid_request_error / missing_model
    ├── ModelNotPriced         400 invalid_request_error / model_not_priced
    ├── ModelNotFound          404 invalid_request_error / model_not_found
    ├── RequestTooLarge        413 invalid_request_error / request_too_large
    ├── UpstreamUnreachable    502 upstream_error / upstream_unreachable
    ├── UpstreamTimeout        504 upstream_error / upstream_timeout
    ├── ServiceUnavailable     503 service_unavailable / service_unavailable
    ├── AdminApiDisabled       503 service_unavailable / admin_api_disabled     (admin API)
    ├── InvalidAdminToken      401 invalid_request_error / invalid_admin_token  (admin API)
    ├── InvalidParameter       400 invalid_request_error / invalid_value, param  (admin API)
    ├── ResourceNotFound       404 invalid_request_error / not_found            (admin API)
    └── ResourceExists         409 invalid_request_error / already_exists       (admin API)

Rules
1. :func:`error_middleware` is the outermost middleware. It renders a ``ProxyError`` and aiohttp's
   own ``HTTPException`` (router 404/405) as JSON: OpenAI's shape
   ``{"error": {"message", "type", "param", "code"}}`` everywhere, Anthropic's
   ``{"type": "error", "error": {"type", "message"}}`` under ``/v1/messages``.
2. It is the only place where an unknown exception becomes a 500; it is logged there, with the
   method and path only (never headers: they hold credentials).
3. Errors know their HTTP status; the domain (``limits``) never does: handlers translate.
4. A budget 429 carries ``Retry-After`` (seconds to the reset) and ``x-should-retry: false`` so
   that the OpenAI and Anthropic SDKs do not retry it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import datetime

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from limits import Denied, format_usd

__all__ = [
    "AdminApiDisabled",
    "InvalidAdminToken",
    "InvalidApiKey",
    "InvalidJson",
    "InvalidParameter",
    "MissingModel",
    "ModelNotFound",
    "ModelNotPriced",
    "ProxyError",
    "RequestTooLarge",
    "ResourceExists",
    "ResourceNotFound",
    "ServiceUnavailable",
    "SpendLimitExceeded",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "error_middleware",
    "error_response",
]

log = logging.getLogger(__name__)

_ANTHROPIC_PREFIX = "/v1/messages"

# Anthropic's error ``type`` per status (docs.anthropic.com "Errors").
_ANTHROPIC_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class ProxyError(Exception):
    """An error the proxy answers itself, with an HTTP status and OpenAI ``type``/``code``."""

    def __init__(
        self,
        status: int,
        type: str,
        code: str | None,
        message: str,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
        self.headers = dict(headers or {})


class InvalidApiKey(ProxyError):
    def __init__(self, message: str) -> None:
        super().__init__(401, "invalid_request_error", "invalid_api_key", message)


class SpendLimitExceeded(ProxyError):
    """The user's spend limit is reached; the message states spent, limit, period and reset."""

    def __init__(self, denied: Denied, now: datetime) -> None:
        resets_at = denied.resets_at
        message = (
            f"Spend limit reached: {format_usd(denied.spent_micros)} spent of "
            f"{format_usd(denied.limit_micros)} this {denied.period.kind.value}; "
            f"the limit resets at {rfc3339(resets_at)}."
        )
        retry_after_s = max(1, math.ceil((resets_at - now).total_seconds()))
        headers = {"Retry-After": str(retry_after_s), "x-should-retry": "false"}
        super().__init__(
            429, "insufficient_quota", "spend_limit_exceeded", message, headers=headers
        )


class InvalidJson(ProxyError):
    def __init__(self, message: str = "The request body is not a JSON object.") -> None:
        super().__init__(400, "invalid_request_error", "invalid_json", message)


class MissingModel(ProxyError):
    def __init__(self) -> None:
        message = "The request body has no 'model' (a non-empty string is required)."
        super().__init__(400, "invalid_request_error", "missing_model", message, param="model")


class ModelNotPriced(ProxyError):
    """Names the config key to add, quoted as TOML needs it (a JSON string is a TOML one)."""

    def __init__(self, model: str) -> None:
        quoted = orjson.dumps(model).decode()
        message = (
            f"No price is known for model {quoted}: add [prices.{quoted}] with input and output "
            'USD per million tokens to the config, or set unpriced_models = "allow".'
        )
        super().__init__(400, "invalid_request_error", "model_not_priced", message, param="model")


class ModelNotFound(ProxyError):
    def __init__(self, model: str, message: str | None = None) -> None:
        message = message or f"The model {model!r} is not served by this proxy."
        super().__init__(404, "invalid_request_error", "model_not_found", message, param="model")


class RequestTooLarge(ProxyError):
    def __init__(self, limit_bytes: int) -> None:
        message = f"The request body is larger than the proxy's limit of {limit_bytes} bytes."
        super().__init__(413, "invalid_request_error", "request_too_large", message)


class UpstreamUnreachable(ProxyError):
    def __init__(self, upstream: str) -> None:
        message = f"The upstream {upstream!r} could not be reached."
        super().__init__(502, "upstream_error", "upstream_unreachable", message)


class UpstreamTimeout(ProxyError):
    def __init__(self, upstream: str) -> None:
        message = f"The upstream {upstream!r} did not answer in time."
        super().__init__(504, "upstream_error", "upstream_timeout", message)


class ServiceUnavailable(ProxyError):
    def __init__(
        self, message: str = "A store the proxy needs is unavailable; retry later."
    ) -> None:
        super().__init__(503, "service_unavailable", "service_unavailable", message)


class AdminApiDisabled(ProxyError):
    def __init__(self) -> None:
        message = "The admin API is disabled: no admin_token is configured."
        super().__init__(503, "service_unavailable", "admin_api_disabled", message)


class InvalidAdminToken(ProxyError):
    """Missing or wrong admin token; API keys of users never open the admin API."""

    def __init__(self) -> None:
        message = "Missing or incorrect admin token: send 'Authorization: Bearer <admin token>'."
        headers = {"WWW-Authenticate": 'Bearer realm="spend-proxy admin"'}
        super().__init__(
            401, "invalid_request_error", "invalid_admin_token", message, headers=headers
        )


class InvalidParameter(ProxyError):
    """A bad value in an admin request; ``param`` names the field (``limits.InvalidValue``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(400, "invalid_request_error", "invalid_value", message, param=param)


class ResourceNotFound(ProxyError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "invalid_request_error", "not_found", message)


class ResourceExists(ProxyError):
    def __init__(self, message: str) -> None:
        super().__init__(409, "invalid_request_error", "already_exists", message)


def rfc3339(at: datetime) -> str:
    """``2026-12-01T00:00:00Z`` for a UTC time (period bounds are whole seconds)."""
    return at.isoformat().replace("+00:00", "Z")


def _body(path: str, error: ProxyError) -> bytes:
    if path.startswith(_ANTHROPIC_PREFIX):
        kind = _ANTHROPIC_TYPES.get(error.status, "api_error")
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": error.message}})
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )


def error_response(request: web.Request, error: ProxyError) -> web.Response:
    """Render ``error`` in the shape the request's API expects (rule 1)."""
    return web.Response(
        status=error.status,
        body=_body(request.path, error),
        content_type="application/json",
        headers=error.headers,
    )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> ProxyError:
    if exc.status == 404:
        message = f"Invalid URL ({request.method} {request.path})"
        return ProxyError(404, "invalid_request_error", None, message)
    if exc.status == 405:
        message = f"Method {request.method} is not allowed on {request.path}."
        allow = exc.headers.get("Allow")
        headers = {"Allow": allow} if allow else None
        return ProxyError(405, "invalid_request_error", None, message, headers=headers)
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return ProxyError(exc.status, kind, None, exc.reason)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every error leaves the proxy here, in the API's JSON shape."""
    try:
        return await handler(request)
    except ProxyError as exc:
        return error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects and the like are answers, not errors
            raise
        return error_response(request, _from_http_exception(request, exc))
    except Exception:  # the one place an unknown failure becomes a 500 (STYLE §4)
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = ProxyError(500, "server_error", "internal_error", "Internal proxy error.")
        return error_response(request, error)
