"""Model -> upstream routing, from ``settings.upstreams`` (SPEC §7).

Rules
1. An exact model name listed by an upstream wins over every glob, whatever the config order.
2. Otherwise the first upstream (in config order) with a matching glob pattern (``fnmatch``,
   case-sensitive: model names are) wins.
3. A configured ``rename`` maps the client's model name to the name sent upstream; the client's
   name stays the one that is priced first, charged and reported.
4. No match -> ``None``; the handler answers 404 ``model_not_found``.
5. Answers are cached per model name; the cache is bounded (a client can send any string), and
   simply cleared when full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from proxy.settings import UpstreamSettings

__all__ = ["Route", "Router"]

_CACHE_MAX = 4096
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model goes: the upstream's name and settings, and the model name to send."""

    upstream: str
    settings: UpstreamSettings
    upstream_model: str


def is_glob(pattern: str) -> bool:
    return not _GLOB_CHARS.isdisjoint(pattern)


class Router:
    def __init__(self, upstreams: Mapping[str, UpstreamSettings]) -> None:
        self._upstreams = dict(upstreams)
        self._exact: dict[str, str] = {}
        self._globs: list[tuple[str, str]] = []
        for name, upstream in upstreams.items():
            for pattern in upstream.models:
                if is_glob(pattern):
                    self._globs.append((pattern, name))
                else:
                    self._exact.setdefault(pattern, name)
        self._cache: dict[str, Route | None] = {}

    def route(self, model: str) -> Route | None:
        """The route for ``model``, or None when no upstream serves it (rules 1-4)."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        route = self._find(model)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[model] = route
        return route

    def _find(self, model: str) -> Route | None:
        name = self._exact.get(model)
        if name is None:
            name = next((up for pattern, up in self._globs if fnmatchcase(model, pattern)), None)
        if name is None:
            return None
        settings = self._upstreams[name]
        return Route(name, settings, settings.rename.get(model, model))

    def listed_models(self) -> list[tuple[str, str]]:
        """``(model, upstream)`` for every exact model name, in config order.

        Glob patterns cannot be listed (they match names nobody has written down yet), so
        ``GET /v1/models`` shows only exact names.
        """
        return list(self._exact.items())
