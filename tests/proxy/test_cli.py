"""``spend-proxy`` in-process: ``main([...])`` against a SQLite file in a temporary directory.

Checks the JSON of every admin command family (the admin API's shapes), that ``--json`` and
``--config`` work after the subcommand, the human tables, and that bad input exits non-zero with
one line on stderr and never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from limits.keys import looks_like_key
from limits.ports import LedgerEntry
from limits.store.clock import SystemClock
from limits.store.sql import SqlStore
from limits.usage import Usage
from proxy.cli import main


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "spend-proxy.toml"
    path.write_text(f'[storage]\nsqlite_path = "{tmp_path / "spend.db"}"\n')
    return str(path)


class Cli:
    def __init__(self, config: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.config = config
        self.capsys = capsys

    def run(self, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--config", self.config])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--json")
        assert (code, err) == (0, "")
        return json.loads(out)

    def ok(self, *argv: str) -> str:
        code, out, err = self.run(*argv)
        assert (code, err) == (0, "")
        return out

    def fails(self, *argv: str, code: int = 1) -> str:
        """Run a failing command; return its last stderr line (the one-line error)."""
        exit_code, out, err = self.run(*argv)
        assert exit_code == code
        assert out == ""
        assert "Traceback" not in err
        lines = err.strip().splitlines()
        assert lines[-1].startswith(("spend-proxy: error:", "spend-proxy ")), err
        if code == 1:
            assert len(lines) == 1
        return lines[-1]


@pytest.fixture
def cli(config: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(config, capsys)


def test_json_and_config_go_after_the_subcommand(
    config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "create", "alice", "--json", "--config", config]) == 0
    user = json.loads(capsys.readouterr().out)
    assert set(user) == {"id", "name", "groups", "created_at"}
    assert main(["keys", "create", "alice", "--json", "--config", config, "--label", "ci"]) == 0
    key = json.loads(capsys.readouterr().out)
    assert set(key) == {"id", "key", "prefix", "label", "created_at"}
    assert looks_like_key(key["key"])
    assert key["label"] == "ci"


def test_users_groups_and_members(cli: Cli) -> None:
    assert cli.json("groups", "create", "staff")["member_count"] == 0
    alice = cli.json("users", "create", "alice", "--group", "staff")
    assert alice["groups"] == ["staff"]
    cli.ok("users", "create", "bob")
    assert cli.json("groups", "add-member", "staff", "bob")["member_count"] == 2
    cli.ok("groups", "remove-member", "staff", "bob")
    assert [u["name"] for u in cli.json("users", "list")] == ["alice", "bob"]
    table = cli.ok("users", "list").splitlines()
    assert table[0].split() == ["ID", "NAME", "GROUPS", "CREATED"]
    assert table[1].split()[:3] == ["1", "alice", "staff"]
    assert table[0].index("NAME") == table[1].index("alice")  # aligned columns
    assert cli.run("users", "delete", "bob", "--json")[1] == ""  # 204: nothing to print
    assert [g["member_count"] for g in cli.json("groups", "list")] == [1]


def test_keys_create_list_revoke(cli: Cli) -> None:
    cli.ok("users", "create", "alice")
    text = cli.ok("keys", "create", "alice", "--label", "laptop")
    key = text.splitlines()[0]
    assert looks_like_key(key)
    assert "only once" in text
    (listed,) = cli.json("keys", "list", "alice")
    assert "key" not in listed
    assert key.startswith(listed["prefix"])
    assert listed["revoked_at"] is None
    cli.ok("keys", "revoke", str(listed["id"]))
    assert cli.json("keys", "list", "alice")[0]["revoked_at"] is not None


def test_limits_set_changes_only_given_settings(cli: Cli) -> None:
    config = cli.json("limits", "set", "--enabled", "--default", "$10")
    assert config == {"enabled": True, "period": "month", "default_limit_micros": 10_000_000}
    config = cli.json("limits", "set", "--period", "week")
    assert config == {"enabled": True, "period": "week", "default_limit_micros": 10_000_000}
    config = cli.json("limits", "set", "--default", "none", "--disabled")
    assert config == {"enabled": False, "period": "week", "default_limit_micros": None}
    assert "nothing to change" in cli.fails("limits", "set")


def test_overrides_usage_and_limits_show(cli: Cli) -> None:
    cli.ok("groups", "create", "staff")
    cli.ok("users", "create", "alice", "--group", "staff")
    cli.ok("limits", "set", "--enabled")
    assert cli.json("limits", "user", "alice", "12.50") == {
        "user": "alice",
        "limit_micros": 12_500_000,
    }
    assert cli.json("limits", "group", "staff", "0.000001")["limit_micros"] == 1
    shown = cli.json("limits", "show")
    assert shown["users"] == [{"user": "alice", "limit_micros": 12_500_000}]
    assert shown["groups"] == [{"group": "staff", "limit_micros": 1, "member_count": 1}]
    assert cli.json("usage", "alice")["source"] == "user"
    cli.ok("limits", "user", "alice", "--clear")
    usage = cli.json("usage", "alice")
    assert (usage["source"], usage["source_group"], usage["limit_micros"]) == ("group", "staff", 1)
    assert "$12.50" not in cli.ok("limits", "show")
    assert "limit of user 'alice' not found" in cli.fails("limits", "user", "alice", "--clear")


def test_usage_and_report_read_the_ledger(cli: Cli, tmp_path: Path) -> None:
    alice = cli.json("users", "create", "alice")
    asyncio.run(_charge(f"sqlite:///{tmp_path / 'spend.db'}", alice["id"], [1_500_000, 250_000]))
    assert cli.json("usage", "alice")["spent_micros"] == 1_750_000
    report = cli.json("report", "--by", "model")
    assert report["rows"] == [{"model": "gpt-4o", "cost_micros": 1_750_000, "calls": 2}]
    text = cli.ok("report")
    assert "alice" in text
    assert "$1.75" in text
    assert cli.json("report", "--period", "previous")["rows"] == []


async def _charge(url: str, user_id: int, costs: list[int]) -> None:
    store = await SqlStore.connect(url)
    now = SystemClock().now()
    try:
        await store.insert(
            [
                LedgerEntry(
                    f"req-{i}",
                    user_id,
                    "gpt-4o",
                    "openai",
                    "/v1/chat/completions",
                    Usage(1, 1),
                    cost,
                    False,
                    now,
                    now,
                )
                for i, cost in enumerate(costs)
            ]
        )
    finally:
        await store.close()


def test_migrate_reports_and_is_idempotent(cli: Cli) -> None:
    assert "applying migration 1" in cli.ok("migrate")
    assert cli.json("migrate") == {"applied": [], "version": 1}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["users", "create", "bad name"], "name:"),
        (["users", "delete", "nobody"], "user 'nobody' not found"),
        (["users", "create", "x", "--group", "ghost"], "group 'ghost' not found"),
        (["usage", "nobody"], "not found"),
        (["keys", "revoke", "42"], "key '42' not found"),
        (["groups", "remove-member", "nope", "nobody"], "not found"),
    ],
)
def test_bad_input_is_one_line_on_stderr(cli: Cli, argv: list[str], message: str) -> None:
    assert message in cli.fails(*argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["limits", "user", "alice", "12.5.0"],
        ["limits", "user", "alice", "-3"],
        ["limits", "user", "alice"],
        ["limits", "set", "--default", "0.0000001"],
        ["keys", "revoke", "abc"],
        ["report", "--by", "colour"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    assert "error:" in cli.fails(*argv, code=2)


def test_duplicate_user_fails(cli: Cli) -> None:
    cli.ok("users", "create", "alice")
    assert (
        cli.fails("users", "create", "alice") == "spend-proxy: error: user 'alice' already exists"
    )


def test_config_problems_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "list", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nsqlite_pth = 'x.db'\n")
    assert main(["users", "list", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "storage.sqlite_pth" in err
    no_dir = tmp_path / "nodir.toml"
    no_dir.write_text(f"[storage]\nsqlite_path = '{tmp_path / 'missing' / 'x.db'}'\n")
    assert main(["users", "list", "--config", str(no_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unable to open database file" in err
    unreachable = tmp_path / "pg.toml"
    unreachable.write_text("[storage]\ndatabase_url = 'postgresql://postgres@127.0.0.1:1/x'\n")
    assert main(["users", "list", "--config", str(unreachable)]) == 1
    assert "database unavailable" in capsys.readouterr().err
