"""Model -> upstream: exact names first, then globs in config order, optional rename."""

from __future__ import annotations

from proxy.routing import Router
from proxy.settings import UpstreamSettings


def _router() -> Router:
    return Router(
        {
            "first": UpstreamSettings(base_url="http://a/v1", models=["gpt-*", "o3*"]),
            "second": UpstreamSettings(
                base_url="http://b/v1",
                models=["gpt-4o", "fast"],
                rename={"fast": "gpt-4o-mini"},
            ),
        }
    )


def test_exact_name_beats_an_earlier_glob() -> None:
    route = _router().route("gpt-4o")
    assert route is not None
    assert (route.upstream, route.upstream_model) == ("second", "gpt-4o")


def test_glob_in_config_order_and_rename() -> None:
    router = _router()
    route = router.route("gpt-4.1")
    assert route is not None
    assert route.upstream == "first"
    fast = router.route("fast")
    assert fast is not None
    assert (fast.upstream, fast.upstream_model) == ("second", "gpt-4o-mini")
    assert router.route("claude-3") is None
    assert router.route("GPT-4o") is None  # model names are case-sensitive


def test_listed_models_are_the_exact_names() -> None:
    assert _router().listed_models() == [("gpt-4o", "second"), ("fast", "second")]


def test_the_cache_is_bounded() -> None:
    router = _router()
    for number in range(5000):
        router.route(f"gpt-{number}")
    assert len(router._tables[None]._cache) <= 4096
    assert router.route("gpt-1") is not None
