"""The proxied API paths and what the pipeline needs to know of each (SPEC §4).

An :class:`Endpoint` is a value: which upstream family serves the path, how its answers' usage
is read (whole, and streamed), how much generated text a stream event holds (for estimates),
whether the proxy must ask for stream usage, and whether the call is charged at all.

Rules
1. OpenAI-format paths (chat, legacy completions, embeddings, Responses) are served by
   ``provider = "openai"`` upstreams, the Anthropic paths by ``provider = "anthropic"`` ones
   (``proxy/routing.py`` rule 3): the proxy does not translate formats.
2. ``/v1/messages/count_tokens`` is forwarded but never charged: no price is needed, the spend
   check still runs (and answers 429 at the limit, like every proxied call), and the admission
   is released whatever the answer holds.
3. A path of ``passthrough_paths`` (:func:`passthrough_endpoint`) may be served by any upstream
   and its usage is read in whichever family it is written (``proxy/usage.py`` rule 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from limits import Usage
from proxy.estimate import EventChars, event_chars, responses_event_chars
from proxy.routing import Provider
from proxy.usage import (
    StreamUsageReader,
    UsageReader,
    anthropic_stream_usage,
    anthropic_usage,
    any_usage,
    chat_usage,
    embeddings_usage,
    final_readings,
    responses_usage,
)

__all__ = ["ENDPOINTS", "Endpoint", "passthrough_endpoint"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A proxied API path (see the module rules).

    ``stream_usage_option``: streams report usage only when asked with
    ``stream_options.include_usage`` (OpenAI chat and legacy completions).
    ``provider``: the upstream family that serves it; None for any (passthrough).
    """

    path: str
    provider: Provider | None
    reader: UsageReader
    stream_reader: StreamUsageReader
    event_chars: EventChars = event_chars
    stream_usage_option: bool = False
    charged: bool = True


def _no_usage(payload: Mapping[str, Any]) -> Usage | None:
    return None


def _openai(path: str, reader: UsageReader, **options: Any) -> Endpoint:
    return Endpoint(path, "openai", reader, final_readings(reader), **options)


ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType(
    {
        endpoint.path: endpoint
        for endpoint in (
            _openai("/v1/chat/completions", chat_usage, stream_usage_option=True),
            _openai("/v1/completions", chat_usage, stream_usage_option=True),
            _openai("/v1/embeddings", embeddings_usage),
            _openai("/v1/responses", responses_usage, event_chars=responses_event_chars),
            Endpoint("/v1/messages", "anthropic", anthropic_usage, anthropic_stream_usage),
            Endpoint(
                "/v1/messages/count_tokens",
                "anthropic",
                _no_usage,
                final_readings(_no_usage),
                charged=False,
            ),
        )
    }
)


def passthrough_endpoint(path: str) -> Endpoint:
    """The endpoint of one configured passthrough path (rule 3)."""
    return Endpoint(path, None, any_usage, final_readings(any_usage))
