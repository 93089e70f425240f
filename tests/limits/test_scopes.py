"""limits.scopes: resolving a user's effective limit (SPEC §2 rules, as properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.periods import PeriodKind
from limits.scopes import UNLIMITED, LimitConfig, Resolution, Source, resolve

limits_micros = st.integers(min_value=0, max_value=10**15)
optional_limits = st.none() | limits_micros
configs = st.builds(
    LimitConfig,
    enabled=st.booleans(),
    period=st.sampled_from(PeriodKind),
    default_limit_micros=optional_limits,
)
enabled_configs = st.builds(
    LimitConfig,
    enabled=st.just(True),
    period=st.sampled_from(PeriodKind),
    default_limit_micros=optional_limits,
)
group_names = st.text(alphabet="abcdefgh-_", min_size=1, max_size=6)
# Small limit ranges make ties between groups common.
group_limits = st.dictionaries(group_names, st.integers(min_value=0, max_value=5) | limits_micros)


@given(configs, optional_limits, group_limits)
def test_disabled_is_unlimited_whatever_the_overrides(
    config: LimitConfig, user: int | None, groups: dict[str, int]
) -> None:
    disabled = LimitConfig(False, config.period, config.default_limit_micros)
    resolution = resolve(disabled, user, groups)
    assert resolution == Resolution(None, None, None)
    assert resolution.unlimited


@given(enabled_configs, limits_micros, group_limits)
def test_user_override_wins_even_when_higher(
    config: LimitConfig, user: int, groups: dict[str, int]
) -> None:
    assert resolve(config, user, groups) == Resolution(user, Source.USER, None)


@given(enabled_configs, group_limits.filter(bool))
def test_minimum_group_override_without_user_override(
    config: LimitConfig, groups: dict[str, int]
) -> None:
    resolution = resolve(config, None, groups)
    lowest = min(groups.values())
    assert resolution.limit_micros == lowest
    assert resolution.source is Source.GROUP
    # The group named is one that has the minimum; on a tie, the first by name.
    assert resolution.source_group == min(name for name, v in groups.items() if v == lowest)
    # Effective limit <= every group override (the "ancestor" property of STYLE §6).
    assert all(resolution.limit_micros <= limit for limit in groups.values())


@given(enabled_configs.filter(lambda c: c.default_limit_micros is not None))
def test_default_when_no_override(config: LimitConfig) -> None:
    assert resolve(config, None, {}) == Resolution(config.default_limit_micros, Source.DEFAULT)


@given(st.sampled_from(PeriodKind))
def test_unlimited_when_nothing_applies(period: PeriodKind) -> None:
    assert resolve(LimitConfig(True, period, None), None, {}) == UNLIMITED


@given(configs, optional_limits, group_limits)
def test_resolution_matches_the_spec_rules(
    config: LimitConfig, user: int | None, groups: dict[str, int]
) -> None:
    """The rules of SPEC §2 restated as one oracle, checked over random configurations."""
    resolution = resolve(config, user, groups)
    if not config.enabled:
        expected: tuple[int | None, Source | None] = (None, None)
    elif user is not None:
        expected = (user, Source.USER)
    elif groups:
        expected = (min(groups.values()), Source.GROUP)
    elif config.default_limit_micros is not None:
        expected = (config.default_limit_micros, Source.DEFAULT)
    else:
        expected = (None, None)
    assert (resolution.limit_micros, resolution.source) == expected
    assert (resolution.source_group is not None) == (resolution.source is Source.GROUP)
    assert resolution.unlimited == (resolution.limit_micros is None)
    if config.enabled and user is None and resolution.limit_micros is not None:
        assert all(resolution.limit_micros <= limit for limit in groups.values())


def test_zero_is_a_real_limit() -> None:
    config = LimitConfig(enabled=True, default_limit_micros=0)
    assert resolve(config, None, {}) == Resolution(0, Source.DEFAULT)
    assert not resolve(config, None, {}).unlimited
    assert resolve(config, 0, {"big": 10}) == Resolution(0, Source.USER)
    assert resolve(config, None, {"a": 0, "b": 5}) == Resolution(0, Source.GROUP, "a")


def test_group_tie_goes_to_the_first_name() -> None:
    config = LimitConfig(enabled=True)
    assert resolve(config, None, {"zeta": 5, "alpha": 5, "mid": 9}).source_group == "alpha"


def test_limit_config_defaults() -> None:
    config = LimitConfig()
    assert (config.enabled, config.period, config.default_limit_micros) == (
        False,
        PeriodKind.MONTH,
        None,
    )


def test_limit_config_takes_the_period_as_text() -> None:
    config = LimitConfig(True, "week", None)  # type: ignore[arg-type]  # as read from storage
    assert config.period is PeriodKind.WEEK
    assert config == LimitConfig(True, PeriodKind.WEEK, None)
    with pytest.raises(ValueError, match="fortnight"):
        LimitConfig(True, "fortnight", None)  # type: ignore[arg-type]


def test_source_values_are_the_api_strings() -> None:
    assert [s.value for s in Source] == ["user", "group", "default"]
