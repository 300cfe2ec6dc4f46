"""``python -m hw``: emit the accelerator's Verilog, lint it, print the register map.

    python -m hw verilog --rows 8 --cols 4 --out build/r8c4
    python -m hw lint build/default/tensor_core.v
    python -m hw regmap
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
