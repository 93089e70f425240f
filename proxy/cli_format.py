"""Human-readable renderings of admin results for the CLI: aligned tables and key/value blocks.

Rules: money is shown in dollars (``limits.money.format_usd``), never as micro-dollars; times as
``YYYY-MM-DD HH:MM UTC``; an absent value as ``-``. Pure functions: values in, text out.
(``--json`` output does not come from here: it is ``limits.admin_results``' JSON shape.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from limits.admin_results import CreatedKey, LimitsOverview, SpendReport
from limits.money import format_usd
from limits.ports import GroupRecord, KeyRecord, UserRecord
from limits.scopes import LimitConfig
from limits.status import SpendStatus

__all__ = [
    "config_text",
    "created_key_text",
    "groups_table",
    "keys_table",
    "limits_text",
    "money",
    "report_text",
    "status_text",
    "table",
    "users_table",
]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; a header line first."""
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)
    ]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs)
    return "\n".join(f"{name + ':':<{width + 1}} {value}" for name, value in pairs)


def _time(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


def money(micros: int | None, absent: str = "-") -> str:
    return absent if micros is None else format_usd(micros)


def users_table(users: Sequence[UserRecord]) -> str:
    rows = [[str(u.id), u.name, ",".join(u.groups) or "-", _time(u.created_at)] for u in users]
    return table(["ID", "NAME", "GROUPS", "CREATED"], rows)


def groups_table(groups: Sequence[GroupRecord]) -> str:
    rows = [
        [str(g.id), g.name, str(g.member_count), money(g.limit_micros), _time(g.created_at)]
        for g in groups
    ]
    return table(["ID", "NAME", "MEMBERS", "LIMIT", "CREATED"], rows)


def keys_table(keys: Sequence[KeyRecord]) -> str:
    rows = [
        [str(k.id), k.prefix + "...", k.label or "-", _time(k.created_at), _time(k.revoked_at)]
        for k in keys
    ]
    return table(["ID", "PREFIX", "LABEL", "CREATED", "REVOKED"], rows)


def created_key_text(created: CreatedKey) -> str:
    record = created.record
    return "\n".join(
        [
            created.key,
            "",
            _fields(
                [("id", str(record.id)), ("user", record.user_name), ("label", record.label or "-")]
            ),
            "This key is shown only once: store it now.",
        ]
    )


def config_text(config: LimitConfig) -> str:
    return _fields(
        [
            ("enabled", "yes" if config.enabled else "no"),
            ("period", config.period.value),
            ("default limit", money(config.default_limit_micros, "none")),
        ]
    )


def limits_text(overview: LimitsOverview) -> str:
    users = table(["USER", "LIMIT"], [[o.user, money(o.limit_micros)] for o in overview.users])
    groups = table(
        ["GROUP", "LIMIT", "MEMBERS"],
        [[o.group, money(o.limit_micros), str(o.member_count)] for o in overview.groups],
    )
    return f"{config_text(overview.config)}\n\n{users}\n\n{groups}"


def status_text(status: SpendStatus) -> str:
    resolution = status.resolution
    source = "-" if resolution.source is None else resolution.source.value
    if resolution.source_group is not None:
        source += f" ({resolution.source_group})"
    return _fields(
        [
            ("user", status.user),
            ("enabled", "yes" if status.enabled else "no"),
            ("limit", money(resolution.limit_micros, "unlimited")),
            ("source", source),
            ("period", f"{status.period.kind.value} from {_time(status.period.start_at)}"),
            ("resets at", _time(status.period.end_at)),
            ("spent", format_usd(status.spent_micros)),
            ("remaining", money(status.remaining_micros, "unlimited")),
        ]
    )


def report_text(report: SpendReport) -> str:
    period = report.period
    title = (
        f"{report.which} {period.kind.value}: {_time(period.start_at)} to {_time(period.end_at)}"
    )
    rows = [[row.name, format_usd(row.cost_micros), str(row.calls)] for row in report.rows]
    if report.group_by != "group":  # group rows overlap: their sum means nothing
        total = sum(row.cost_micros for row in report.rows)
        rows.append(["TOTAL", format_usd(total), str(sum(row.calls for row in report.rows))])
    return f"{title}\n{table([report.group_by.upper(), 'COST', 'CALLS'], rows)}"
