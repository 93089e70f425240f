"""Where a proxy's CPU goes under load: py-spy samples, summarised by package and function.

Used by ``run.py --profile``, after the measured matrix (sampling slows the target, so a
profiled cell is never one of the measured ones).

Rules
1. ``py-spy record --nonblocking --format raw`` samples the running process (idle samples are
   dropped by py-spy, so the shares are shares of *busy* time). The raw file has one line per
   distinct stack: ``frame;frame;...;leaf COUNT``, with ``frame = "function (path:line)"``.
2. Self time is charged to the leaf frame; inclusive time to every distinct frame of a stack.
3. A frame's package is the first component of its path (``aiohttp/web_protocol.py`` ->
   ``aiohttp``); the project's own ``proxy`` and ``limits`` show up under those names.
4. Time in native code (uvloop's event loop, socket syscalls) is charged to the Python frame
   that entered it: ``run_app (aiohttp/web.py)`` as a leaf is the event loop itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

__all__ = ["py_spy", "record", "summarize"]

# Frames every sample passes through (process entry points): not worth listing.
_ENTRY = frozenset(
    {
        "main (proxy/cli.py)",
        "_serve (proxy/cli.py)",
        "serve (proxy/server.py)",
        "_run (proxy/server.py)",
    }
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy executable (beside the venv's python first), or None."""
    here = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def record(executable: str, pid: int, duration_s: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``duration_s`` seconds into ``out`` (raw format)."""
    argv = [executable, "record", "--pid", str(pid), "--duration", str(max(1, round(duration_s)))]
    argv += ["--rate", "250", "--nonblocking", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _parse(frame: str) -> tuple[str, str]:
    """(package, "function (file)") of one py-spy frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return "?", frame.strip()
    path = match["path"]
    package = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    return package, f"{match['func']} ({path})"


def summarize(raw: Path, top: int = 12) -> list[str]:
    """Printable lines: busy samples by package (self), top functions by self and inclusive."""
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(f) for f in stack.split(";")]
        total += count
        by_package[frames[-1][0]] += count
        self_time[frames[-1][1]] += count
        for name in {f[1] for f in frames if f[0] in ("proxy", "limits") and f[1] not in _ENTRY}:
            inclusive[name] += count
    if not total:
        return [f"  no samples in {raw}"]

    def share(counter: Counter[str], n: int) -> list[str]:
        return [f"    {100 * c / total:5.1f}%  {name}" for name, c in counter.most_common(n)]

    return [
        f"  {total} busy samples; self time by package:",
        *share(by_package, top),
        "  self time by function:",
        *share(self_time, top),
        "  inclusive time of the project's own functions (proxy/, limits/):",
        *share(inclusive, top + 6),
    ]
