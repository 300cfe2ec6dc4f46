"""README.md stays true: its generated tables match the code they document."""

from pathlib import Path

from hw.config import Config
from hw.regmap import markdown_table as regmap_table
from sw.isa import markdown_table as isa_table

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_register_map_table_is_current():
    assert regmap_table() in README, "run `python -m hw regmap` and paste the table into README"


def test_isa_table_is_current():
    assert isa_table() in README, "run `python -m hw isa` and paste the table into README"


def test_every_config_knob_is_documented():
    for name, *_ in Config.knobs():
        flag = "--" + name.replace("_", "-")
        assert f"| `{name}` | `{flag}` |" in README, name


def test_quick_start_is_the_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```", 2)[1]
    assert "make verilog" in quick and "make test" in quick
