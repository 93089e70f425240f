"""The OpenAPI 3.1 document of the admin API, generated from its route table (SPEC §5).

Rules
1. The document is computed from the same ``Operation`` rows that register the aiohttp routes
   (``proxy/admin_http.py`` rule 1) and from the pydantic models of ``proxy/admin_models.py``
   (``models_json_schema``), so every route, parameter, body, success status and error status
   it lists is the one served. ``tests/proxy/test_admin_api.py`` checks the (method, path)
   pairs against the app's router and validates real answers against these schemas.
2. Every operation needs the admin token (``bearer``) and can answer 401 (no or wrong token)
   and 503 (admin API disabled, or the database unavailable), except ``GET /openapi.json``,
   which is public.
3. Errors are OpenAI's shape (``ErrorBody``) with the statuses the row lists; an operation
   with a body can also answer 413 (body over ``max_body_bytes``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from limits.admin import MAX_STORED_INT
from proxy.admin_http import ADMIN_PREFIX, Operation
from proxy.admin_models import NAME_SCHEMA, ErrorBody

__all__ = ["OPENAPI_PATH", "document"]

OPENAPI_PATH = "/openapi.json"  # below ADMIN_PREFIX
_REF = "#/components/schemas/{model}"
_SEGMENT = re.compile(r"{(\w+)}")
_ERRORS = {
    400: "Invalid input: `param` names the field",
    401: "Missing or wrong admin token",
    404: "No such user, group, key or override",
    409: "The name exists already",
    413: "The request body is too large",
    503: "The admin API is disabled (no admin token configured) or the database is unavailable",
}
_PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "user": {"description": "A user's name", "schema": NAME_SCHEMA, "example": "alice"},
    "group": {"description": "A group's name", "schema": NAME_SCHEMA, "example": "eng"},
    "id": {
        "description": "A key's id",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_STORED_INT},
        "example": 1,
    },
}


def _models(operations: Sequence[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    found: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(ErrorBody, "serialization"): None}
    for op in operations:
        if op.body is not None:
            found[(op.body, "validation")] = None
        if op.answer is not None:
            found[(op.answer, "serialization")] = None
    return list(found)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _responses(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    if op.answer is None:
        answers = {str(op.status): {"description": "Done (no content)"}}
    else:
        schema = refs[(op.answer, "serialization")]
        schema = {"type": "array", "items": schema} if op.many else schema
        answers = {str(op.status): _json(schema, op.summary)}
    error = refs[(ErrorBody, "serialization")]
    statuses = {401, 503, *op.errors, *((413,) if op.body is not None else ())}
    answers.update({str(s): _json(error, _ERRORS[s]) for s in sorted(statuses)})
    return answers


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema()["properties"]
    return [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in properties.items()
    ]


def _operation(op: Operation, refs: dict[Any, Any]) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, **_PATH_PARAMETERS[name]}
        for name in _SEGMENT.findall(op.path)
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    spec: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        content = {"application/json": {"schema": refs[(op.body, "validation")]}}
        spec["requestBody"] = {"required": op.body_required, "content": content}
    spec["responses"] = _responses(op, refs)
    return spec


def _openapi_operation() -> dict[str, Any]:
    document_schema = {"type": "object", "required": ["openapi", "paths"]}
    return {
        "operationId": "openapi",
        "summary": "This document (no token needed)",
        "security": [],
        "responses": {"200": _json(document_schema, "The OpenAPI document")},
    }


def document(operations: Sequence[Operation], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` plus ``GET /openapi.json`` (rule 1)."""
    refs, top = models_json_schema(_models(operations), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {ADMIN_PREFIX + OPENAPI_PATH: {"get": _openapi_operation()}}
    for op in operations:
        paths.setdefault(op.url, {})[op.method.lower()] = _operation(op, refs)
    bearer = {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token (`admin_token`, env SPEND_PROXY_ADMIN_TOKEN)",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "spend-proxy admin API",
            "version": version,
            "description": "Users, groups, keys, spend limits and spend reports. Money is "
            "integer micro-dollars (1,000,000 = $1.00); times are RFC 3339 UTC.",
        },
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"adminToken": bearer},
        },
        "security": [{"adminToken": []}],
    }
