"""API keys: generation, hashing and the display prefix (SPEC §4).

Rules
1. A key is ``sk-sp-`` followed by ``secrets.token_urlsafe(32)``: 43 URL-safe base64 characters,
   i.e. 256 bits of randomness from the OS CSPRNG.
2. Only the SHA-256 hex digest (:func:`hash_key`) and a short display prefix
   (:func:`display_prefix`) are ever stored; the plaintext is shown once, at creation.
3. Hashing is plain SHA-256 with no salt on purpose: the key is a 256-bit random secret, so a
   slow or salted hash adds nothing, and a deterministic digest lets the proxy look keys up by
   hash in one indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets

__all__ = ["KEY_PREFIX", "display_prefix", "generate_key", "hash_key", "looks_like_key"]

KEY_PREFIX = "sk-sp-"
_RANDOM_BYTES = 32
_DISPLAY_CHARS = 12
# The prefix, then at least 32 characters of the URL-safe base64 alphabet (SPEC §4).
_KEY_PATTERN = re.compile(r"sk-sp-[A-Za-z0-9_-]{32,}")


def generate_key() -> str:
    """A new random API key: ``"sk-sp-"`` + 43 URL-safe characters (49 characters in all)."""
    return KEY_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest (64 lowercase hex characters) under which ``key`` is stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def display_prefix(key: str) -> str:
    """The first 12 characters of ``key`` (``"sk-sp-"`` + 6), safe to store and show."""
    return key[:_DISPLAY_CHARS]


def looks_like_key(text: str) -> bool:
    """Whether ``text`` has the shape of a spend-proxy key (not whether such a key exists)."""
    return _KEY_PATTERN.fullmatch(text) is not None
