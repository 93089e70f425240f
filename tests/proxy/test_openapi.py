"""The OpenAPI document of the admin API cannot drift from the app (``proxy/openapi.py``).

The routes it lists are the routes the router has; the constraints it documents are the ones
``AdminService`` enforces. (That answers conform to it is checked on every call of the admin
tests, by ``tests/proxy/admin_client.py``, and by ``test_admin_schemathesis.py``.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from openapi_spec_validator import validate

from limits.admin import MAX_STORED_INT, validate_limit, validate_name
from limits.errors import InvalidValue
from limits.periods import PeriodKind
from proxy.admin import ADMIN_PREFIX, openapi_document
from proxy.admin_models import NAME_SCHEMA
from proxy.app import create_app
from proxy.settings import Settings

DOCUMENT = openapi_document()
OPERATIONS = [
    (method, path, spec)
    for path, item in DOCUMENT["paths"].items()
    for method, spec in item.items()
]


def _accepts(check: Any, value: object) -> bool:
    try:
        check(value)
    except InvalidValue:
        return False
    return True


def test_the_document_lists_exactly_the_routes_of_the_app(tmp_path: Path) -> None:
    app = create_app(Settings(storage={"sqlite_path": str(tmp_path / "x.db")}))
    routed = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith(ADMIN_PREFIX)
    }
    documented = {(method, path) for method, path, _ in OPERATIONS}
    assert documented == routed
    assert len(documented) == 22


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)  # raises OpenAPIValidationError naming the bad part


def test_every_operation_is_described_completely() -> None:
    ids = [spec["operationId"] for _, _, spec in OPERATIONS]
    assert len(ids) == len(set(ids))
    for method, path, spec in OPERATIONS:
        responses = spec["responses"]
        in_path = set(re.findall(r"{(\w+)}", path))
        parameters = {p["name"] for p in spec.get("parameters", []) if p["in"] == "path"}
        assert parameters == in_path, (method, path)
        assert spec["summary"]
        if path == ADMIN_PREFIX + "/openapi.json":
            assert spec["security"] == []
            continue
        assert {"401", "503"} <= set(responses), (method, path)
        success = [status for status in responses if status.startswith("2")]
        expected = {"post": ["201"], "delete": ["204"]}.get(method, ["200"])
        assert success == expected, (method, path)
        if "requestBody" in spec:
            assert {"400", "413"} <= set(responses), (method, path)
        if in_path:
            assert "404" in responses, (method, path)


def _ecma_fullmatch(pattern: str) -> re.Pattern[str]:
    """An anchored JSON-schema pattern as Python's ``fullmatch`` (ECMA ``$`` is end of input)."""
    assert pattern.startswith("^")
    assert pattern.endswith("$")
    return re.compile(pattern[1:-1])


NAME = _ecma_fullmatch(NAME_SCHEMA["pattern"])


@given(st.text(max_size=70) | st.from_regex(NAME, fullmatch=True))
@example("alice\n")
@example("a" * 64)
@example("a" * 65)
def test_the_documented_name_pattern_is_the_services(name: str) -> None:
    assert _accepts(validate_name, name) == (NAME.fullmatch(name) is not None)


def test_documented_limits_and_enums_are_the_services() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    limit = schemas["LimitBody"]["properties"]["limit_micros"]
    assert (limit["minimum"], limit["maximum"]) == (0, MAX_STORED_INT)
    assert _accepts(validate_limit, 0)
    assert _accepts(validate_limit, MAX_STORED_INT)
    assert not _accepts(validate_limit, -1)
    assert not _accepts(validate_limit, MAX_STORED_INT + 1)
    config = schemas["LimitConfigBody"]["properties"]
    assert config["period"]["enum"] == [kind.value for kind in PeriodKind]
    assert config["default_limit_micros"]["anyOf"][0] == {"type": "integer", **limit_bounds()}
    assert "default" not in config["enabled"]  # left out means "unchanged", not null
    assert schemas["LimitConfig"]["properties"]["period"]["enum"] == config["period"]["enum"]


def limit_bounds() -> dict[str, int]:
    return {"minimum": 0, "maximum": MAX_STORED_INT}


@pytest.mark.parametrize(
    "name", ["CreatedKey", "Key", "User", "Group", "Limits", "Status", "SpendReport", "ErrorBody"]
)
def test_answers_allow_no_undocumented_fields(name: str) -> None:
    assert DOCUMENT["components"]["schemas"][name]["additionalProperties"] is False
