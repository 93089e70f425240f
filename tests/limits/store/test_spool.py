"""``FileSpool``: durable JSON Lines, exact round trip, torn and damaged lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.ports import LedgerEntry
from limits.store.spool import FileSpool, decode_line, encode_line
from limits.usage import Usage
from tests.limits.fakes import make_row


def entry(request_id: str) -> LedgerEntry:
    return make_row(request_id)[0]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "ledger.jsonl"  # the directory does not exist yet


def test_a_new_spool_is_empty(path: Path) -> None:
    spool = FileSpool(path)
    assert len(spool) == 0
    assert spool.read() == []
    spool.clear()  # no file: nothing to do
    assert not path.exists()


def test_appended_rows_survive_a_new_instance(path: Path) -> None:
    spool = FileSpool(path)
    spool.append([entry("a"), entry("b")])
    spool.append([])
    spool.append([entry("c")])
    assert len(spool) == 3
    reopened = FileSpool(path)
    assert len(reopened) == 3
    assert reopened.read() == [entry("a"), entry("b"), entry("c")]
    assert path.stat().st_mode & 0o777 == 0o600


def test_round_trip_is_exact_for_every_field(path: Path) -> None:
    original = LedgerEntry(
        request_id="req-ü-1",
        user_id=42,
        model="claude-sonnet-4",
        upstream="anthropic",
        endpoint="/v1/messages",
        usage=Usage(1, 2, 3, 4, 5),
        cost_micros=123_456_789,
        estimated=True,
        started_at=datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC),
        charged_at=datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1))),
    )
    FileSpool(path).append([original])
    (copy,) = FileSpool(path).read()
    assert copy == original
    assert copy.started_at.tzinfo == UTC
    assert copy.charged_at.utcoffset() == timedelta(hours=1)


def test_clear_empties_the_spool(path: Path) -> None:
    spool = FileSpool(path)
    spool.append([entry("a")])
    spool.clear()
    assert len(spool) == 0
    assert spool.read() == []
    assert len(FileSpool(path)) == 0


def test_a_torn_last_line_is_skipped_and_cut_on_open(path: Path) -> None:
    FileSpool(path).append([entry("a"), entry("b")])
    with path.open("ab") as file:
        file.write(b'{"v": 1, "request_id": "c", "us')
    spool = FileSpool(path)
    assert len(spool) == 2
    assert [e.request_id for e in spool.read()] == ["a", "b"]
    spool.append([entry("d")])  # starts on a fresh line
    assert [e.request_id for e in FileSpool(path).read()] == ["a", "b", "d"]


def test_read_skips_a_torn_last_line_without_reopening(path: Path) -> None:
    spool = FileSpool(path)
    spool.append([entry("a")])
    with path.open("ab") as file:
        file.write(b'{"v": 1, "requ')
    assert [e.request_id for e in spool.read()] == ["a"]


def test_a_complete_last_record_missing_its_newline_is_kept(path: Path) -> None:
    FileSpool(path).append([entry("a"), entry("b")])
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    spool = FileSpool(path)
    assert len(spool) == 2
    spool.append([entry("c")])
    assert [e.request_id for e in FileSpool(path).read()] == ["a", "b", "c"]


def test_a_damaged_middle_line_is_skipped_and_kept_aside_on_clear(path: Path) -> None:
    spool = FileSpool(path)
    spool.append([entry("a")])
    with path.open("ab") as file:
        file.write(b"not json\n")
    spool.append([entry("b")])
    assert [e.request_id for e in spool.read()] == ["a", "b"]
    spool.clear()
    aside = path.with_name(path.name + ".corrupt.1")
    assert b"not json" in aside.read_bytes()
    assert spool.read() == []
    assert len(spool) == 0


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2]",
        b'{"v": 2}',
        b'{"v": 1, "request_id": 7}',
        b'{"v": true}',
    ],
)
def test_records_of_the_wrong_shape_are_damaged_lines(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(line + b"\n")
    assert FileSpool(path).read() == []


def test_each_request_id_is_read_once(path: Path) -> None:
    spool = FileSpool(path)
    spool.append([entry("a"), entry("b")])
    spool.append([entry("a")])
    assert [e.request_id for e in spool.read()] == ["a", "b"]


def test_a_failed_append_raises_and_changes_nothing(path: Path) -> None:
    spool = FileSpool(path)
    path.mkdir(parents=True)  # the spool path is taken by a directory: every open fails
    with pytest.raises(OSError):  # noqa: PT011 - any OSError: the OS picks which one
        spool.append([entry("a")])
    assert len(spool) == 0


times = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds with timezones=
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001 - same
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5))]),
)
entries = st.builds(
    LedgerEntry,
    request_id=st.text(min_size=1, max_size=40),
    user_id=st.integers(min_value=0, max_value=2**62),
    model=st.text(max_size=40),
    upstream=st.text(max_size=20),
    endpoint=st.text(max_size=40),
    usage=st.builds(Usage, *(st.integers(min_value=0, max_value=2**40) for _ in range(5))),
    cost_micros=st.integers(min_value=0, max_value=2**62),
    estimated=st.booleans(),
    started_at=times,
    charged_at=times,
)


@given(entries)
def test_any_entry_round_trips_exactly_through_a_line(original: LedgerEntry) -> None:
    line = encode_line(original)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # newlines inside strings are escaped
    assert decode_line(line) == original
