"""``config.example.toml`` documents every ``Settings`` key, recursively, with its default.

The example's commented-out assignments and tables (``# redis_url = ...``, ``# [prices."m"]``)
count as documentation: they are un-commented, loaded through ``load_settings`` (so they are
valid too) and walked alongside the settings models. A key added to ``Settings`` without a line
in the example, or a line for a key that does not exist, fails here.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from proxy.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
# "# key = value" and "# [table]": an example, not prose.
_COMMENTED_SETTING = re.compile(r"^#\s?(?=[a-z_][a-z0-9_]*\s*=|\[)", re.MULTILINE)


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """``(model, is_mapping)`` for a field typed ``Model`` or ``dict[str, Model]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict and len(args) == 2:
        value = args[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, True
    return None, False


def _undocumented(model: type[BaseModel], docs: list[dict[str, Any]], path: str) -> list[str]:
    """Fields of ``model`` that none of ``docs`` (tables documenting it) mentions, and keys the
    docs mention that ``model`` does not have."""
    problems = [
        f"{path}{key} is not a setting"
        for doc in docs
        for key in doc.keys() - set(model.model_fields)
    ]
    for name, field in model.model_fields.items():
        present = [doc[name] for doc in docs if name in doc]
        if not present:
            problems.append(f"{path}{name} is not documented")
            continue
        inner, mapping = _model_of(field.annotation)
        if inner is not None:
            tables = (
                [entry for value in present for entry in value.values()] if mapping else present
            )
            problems += _undocumented(inner, tables, f"{path}{name}.")
    return problems


def test_every_setting_is_documented_and_every_documented_key_exists(tmp_path: Path) -> None:
    full = tmp_path / "full.toml"
    full.write_text(_COMMENTED_SETTING.sub("", EXAMPLE.read_text()))
    load_settings(full)  # the commented examples are valid settings too
    documented = tomllib.loads(full.read_text())
    assert _undocumented(Settings, [documented], "") == []


def test_the_active_example_values_are_the_defaults() -> None:
    example = load_settings(EXAMPLE)
    defaults = Settings()
    for name in Settings.model_fields.keys() - {"upstreams", "prices"}:
        assert getattr(example, name) == getattr(defaults, name), name
    assert list(example.upstreams) == ["openai"]  # an example upstream; there is no default one
    assert example.prices == {}
