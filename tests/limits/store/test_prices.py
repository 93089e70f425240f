"""litellm's price map is read as a file (litellm is never imported), overrides win."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from limits import ConfigError, Usage, cost_micros
from limits.pricing import price_from_usd_per_mtok
from limits.store.prices import litellm_price_file, load_price_map, load_price_table


def test_reads_the_installed_map_without_importing_litellm() -> None:
    path = litellm_price_file()
    assert path.name == "model_prices_and_context_window_backup.json"
    code = (
        "import sys; from limits.store.prices import load_price_table; "
        "t = load_price_table(); print(len(t._catalog) > 1000, 'litellm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "False"]
    table = load_price_table()
    price = table.find("gpt-4o-mini")
    assert price is not None
    # $0.15 / $0.60 per million tokens: 1M input + 1M output tokens cost $0.75
    assert cost_micros(Usage(input_tokens=10**6, output_tokens=10**6), price) == 750_000


def test_overrides_beat_the_map() -> None:
    override = price_from_usd_per_mtok(Decimal("1"), Decimal("2"))
    table = load_price_table({"gpt-4o-mini": override})
    assert table.find("gpt-4o-mini") == override


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_price_map(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        load_price_map(broken)
    broken.write_text("{nope")
    with pytest.raises(ConfigError, match="cannot read"):
        load_price_map(broken)
