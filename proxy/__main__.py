"""``python -m proxy``: the same command line as ``spend-proxy`` (``proxy.cli.main``)."""

from __future__ import annotations

from proxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
