"""A test client for the admin API that holds every answer to the OpenAPI document.

``AdminClient.call`` sends one request and checks what came back against
``GET /admin/v1/openapi.json``: the status is one the operation documents, a documented body is
JSON valid against the document's schema (``jsonschema``, draft 2020-12, as OpenAPI 3.1 says),
an undocumented one is empty. Every admin test goes through it, so every answer the tests see is
also a conformance check of the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.admin import ADMIN_PREFIX

__all__ = ["TOKEN", "AdminClient", "conform", "operation_of"]

TOKEN = "admin-test-token-0123456789"
_SEGMENT = re.compile(r"{\w+}")


def operation_of(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    """The document's operation for a concrete ``path`` (templates matched segment-wise)."""
    for template, item in document["paths"].items():
        pattern = _SEGMENT.sub("[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        if re.fullmatch(pattern, path) and method.lower() in item:
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def conform(
    document: dict[str, Any], method: str, path: str, status: int, content_type: str, body: bytes
) -> Any:
    """Assert the answer is one the document describes; return its JSON (None when empty)."""
    responses = operation_of(document, method, path)["responses"]
    assert str(status) in responses, f"{method} {path} answered undocumented {status}: {body!r}"
    content = responses[str(status)].get("content")
    if content is None:
        assert body == b"", f"{method} {path} {status} has a body the document does not give"
        return None
    assert content_type == "application/json"
    payload = orjson.loads(body)
    schema = {**content["application/json"]["schema"], "components": document["components"]}
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(payload)
    return payload


@dataclass
class AdminClient:
    """The test client of a running proxy, calling ``/admin/v1`` with the admin token."""

    client: TestClient[web.Request, web.Application]
    document: dict[str, Any]
    token: str = TOKEN

    async def call(
        self,
        method: str,
        path: str,
        expect: int,
        *,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> Any:
        """``method`` ``ADMIN_PREFIX + path``; asserts the status is ``expect`` and conforms."""
        url = ADMIN_PREFIX + path
        headers = {"Authorization": f"Bearer {self.token}"}
        if json is not None:
            data, headers["Content-Type"] = orjson.dumps(json), "application/json"
        async with self.client.request(
            method, url, data=data, params=params, headers=headers
        ) as response:
            body = await response.read()
            assert response.status == expect, f"{method} {url}: {response.status} {body!r}"
            return conform(self.document, method, url, expect, response.content_type, body)

    async def error(self, method: str, path: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        """The ``error`` object of an error answer."""
        payload = await self.call(method, path, expect, **kwargs)
        error: dict[str, Any] = payload["error"]
        return error
