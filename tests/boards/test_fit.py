"""``python -m boards.fit``'s reading of a yosys ``stat`` (the tool itself runs yosys, so
the suite checks the parsing and the roll-up on a statistics text of that form)."""

from boards.fit import CLASSES, own_cells, roll_up, table

STAT = """
=== top ===

        +----------Local Count, excluding submodules.
        |
       43 cells
       22   $__ICE40_CARRY_WRAPPER
       21   $lut
        2 submodules
       23   SB_DFFESR
        1   top.core
        1   top.ram

=== top.core ===

       12 cells
        5   $lut
        3   $_DFFE_PP_
        2   SB_MAC16
        1   SB_RAM40_4K
        1   submodules
        1   top.core.array

=== top.core.array ===

        9   $lut
        4   SB_DFF
        1   SB_MAC16

=== top.ram ===

        4   SB_SPRAM256KA
        7   $lut
"""


def test_own_cells_counts_each_class_and_skips_submodule_lines():
    own = own_cells(STAT)
    assert own["top"] == {"CARRY": 22, "LUT": 21, "FF": 23}
    assert own["top.core"] == {"LUT": 5, "FF": 3, "DSP": 2, "BRAM": 1}
    assert own["top.ram"] == {"SPRAM": 4, "LUT": 7}


def test_roll_up_sums_the_levels_below_the_depth():
    totals = roll_up(own_cells(STAT), depth=2)
    assert totals["top.core"] == {"LUT": 14, "FF": 7, "DSP": 3, "BRAM": 1}
    assert totals["top"]["LUT"] == 21
    lines = table(totals).splitlines()
    assert lines[0] == "| module | " + " | ".join(CLASSES) + " |"
    # largest LUT count first, then the grand total
    assert lines[2].startswith("| top | 21 | 22 | 23 |")
    assert lines[-1] == "| **total** | 42 | 22 | 30 | 3 | 1 | 4 |"
