"""Ledger request ids are unique, keep a sane client id, and never carry an unsafe one."""

from __future__ import annotations

from proxy.request_ids import RequestIds


def test_fresh_ids_are_32_hex_and_unique_across_instances() -> None:
    ids = [RequestIds(), RequestIds()]
    made = [maker.new(None) for maker in ids for _ in range(1000)]
    assert len(set(made)) == 2000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_client_ids_are_kept_with_a_unique_suffix_only_when_sane() -> None:
    maker = RequestIds()
    first, second = maker.new("req_1.a:b-c"), maker.new("req_1.a:b-c")
    assert first != second
    assert first.startswith("req_1.a:b-c-")
    assert len(first) <= 128  # the ledger column
    for bad in ("has space", "x" * 65, "semi;colon", "ünicode", ""):
        made = maker.new(bad)
        assert len(made) == 32
        assert set(made) <= set("0123456789abcdef")
