"""Model -> upstream routing, from ``settings.upstreams`` (SPEC §7).

Rules
1. An exact model name listed by an upstream wins over every glob, whatever the config order.
2. Otherwise the first upstream (in config order) with a matching glob pattern (``fnmatch``,
   case-sensitive: model names are) wins.
3. Routing is per API family: a call on an OpenAI-format path (``/v1/chat/completions``, ...)
   is routed among the ``provider = "openai"`` upstreams only, a call on ``/v1/messages`` among
   the ``provider = "anthropic"`` ones; rules 1 and 2 apply within the family. The proxy never
   translates between formats, so an upstream of the other family is no candidate (the caller
   answers 404 ``model_not_found`` and names the right path, see :meth:`Router.route`).
   ``passthrough_paths`` route among all upstreams (``provider=None``).
4. A configured ``rename`` maps the client's model name to the name sent upstream; the client's
   name stays the one that is priced first, charged and reported.
5. No match -> ``None``; the handler answers 404 ``model_not_found``.
6. :meth:`Router.default` is the first upstream in config order: where a passthrough call
   without a ``model`` goes.
7. Answers are cached per family and model name; each cache is bounded (a client can send any
   string), and simply cleared when full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from proxy.settings import UpstreamSettings

__all__ = ["Provider", "Route", "Router"]

Provider = Literal["openai", "anthropic"]

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


class _Table:
    """Rules 1, 2, 4 and 7 over one family of upstreams."""

    __slots__ = ("_cache", "_exact", "_globs", "_upstreams")

    def __init__(self, upstreams: Mapping[str, UpstreamSettings]) -> None:
        self._upstreams = upstreams
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

    def exact_models(self) -> list[tuple[str, str]]:
        return list(self._exact.items())


class Router:
    """Model -> :class:`Route`, per API family (see the module rules)."""

    def __init__(self, upstreams: Mapping[str, UpstreamSettings]) -> None:
        self._upstreams = dict(upstreams)
        self._tables: dict[Provider | None, _Table] = {
            None: _Table(self._upstreams),
            "openai": _Table(self._family("openai")),
            "anthropic": _Table(self._family("anthropic")),
        }

    def _family(self, provider: Provider) -> dict[str, UpstreamSettings]:
        return {name: up for name, up in self._upstreams.items() if up.provider == provider}

    def route(self, model: str, provider: Provider | None = None) -> Route | None:
        """The route for ``model`` among the upstreams of ``provider`` (all when None), or None
        when none of them serves it (rules 1-5). When None, ``route(model)`` (all families)
        says whether another family would have served it."""
        return self._tables[provider].route(model)

    def default(self) -> Route | None:
        """The first upstream in config order, sent the model name ``""`` (rule 6)."""
        name = next(iter(self._upstreams), None)
        return None if name is None else Route(name, self._upstreams[name], "")

    def listed_models(self, provider: Provider | None = None) -> list[tuple[str, str]]:
        """``(model, upstream)`` for every exact model name of ``provider``'s upstreams (all
        when None), in config order.

        Glob patterns cannot be listed (they match names nobody has written down yet), so
        ``GET /v1/models`` shows only exact names.
        """
        return self._tables[provider].exact_models()
