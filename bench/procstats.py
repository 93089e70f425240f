"""CPU time and memory of running processes, read from Linux ``/proc``.

What is measured
1. CPU: ``utime + stime`` (fields 14 and 15 of ``/proc/<pid>/stat``, in clock ticks) summed over
   a process and all its descendants, so a proxy that forks workers is measured whole.
2. Memory: ``VmRSS`` (now) and ``VmHWM`` (the peak resident set since the process started) from
   ``/proc/<pid>/status``, in kB, summed over the same tree.
3. The machine: busy and total jiffies from the first line of ``/proc/stat``, to show how loaded
   both cores were while a cell ran (noise from other work shows up there).

Rules: nothing here raises for a process that vanished between two reads; it counts as zero.
The resolution of CPU time is one clock tick (usually 10 ms): measure windows of seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["MachineCpu", "TreeSample", "machine_cpu", "sample_tree"]

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class TreeSample:
    """One reading of a process tree: CPU seconds so far, current and peak RSS in MB."""

    pids: tuple[int, ...]
    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """Jiffies of all cores together: ``busy`` (not idle or iowait) out of ``total``."""

    busy: int
    total: int


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or ")".
    return raw[raw.rindex(b")") + 2 :].split()


def _children(root: int) -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and len(fields) > 1:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def _tree(root: int) -> list[int]:
    kids = _children(root)
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(kids.get(pid, ()))
    return found


def _cpu_s(pid: int) -> float:
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 13:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def _memory_kb(pid: int) -> tuple[int, int]:
    rss_kb = peak_kb = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss_kb = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak_kb = int(line.split()[1])
    except OSError:
        pass
    return rss_kb, peak_kb


def sample_tree(root: int) -> TreeSample:
    """CPU seconds and memory of ``root`` and every descendant, read now."""
    pids = _tree(root)
    memory = [_memory_kb(pid) for pid in pids]
    return TreeSample(
        pids=tuple(pids),
        cpu_s=sum(_cpu_s(pid) for pid in pids),
        rss_mb=sum(m[0] for m in memory) / 1024,
        peak_rss_mb=sum(m[1] for m in memory) / 1024,
    )


def machine_cpu() -> MachineCpu:
    """Jiffies of the whole machine so far (``cpu`` line of ``/proc/stat``)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user).
    idle = values[3] + values[4]
    total = sum(values[:8])
    return MachineCpu(busy=total - idle, total=total)
