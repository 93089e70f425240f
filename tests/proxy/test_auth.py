"""Which key a request presents (the middleware itself is exercised in test_errors.py)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.auth import presented_key


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"Authorization": "Bearer sk-sp-abc"}, "sk-sp-abc"),
        ({"Authorization": "bearer   sk-sp-abc  "}, "sk-sp-abc"),
        ({"x-api-key": "sk-sp-xyz"}, "sk-sp-xyz"),
        ({"Authorization": "Bearer sk-sp-a", "x-api-key": "sk-sp-b"}, "sk-sp-a"),
        ({"Authorization": "Basic dXNlcg==", "x-api-key": "sk-sp-b"}, "sk-sp-b"),
        ({"Authorization": "Bearer"}, None),
        ({"x-api-key": "  "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(CIMultiDictProxy(CIMultiDict(headers))) == key
