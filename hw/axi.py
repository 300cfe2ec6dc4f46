"""AXI4 and AXI4-Lite interface signatures (AMBA AXI, ARM IHI 0022).

Both are written from the master's point of view: a master component has an
``Out(AXI4Signature(...))`` member, a slave an ``In(...)`` one. Member names are the lower-case
AXI signal names, so the flattened Verilog ports are ``m_axi__awaddr`` and so on, which
cocotbext-axi finds with ``AxiBus.from_prefix(dut, "m_axi", bus_separator="__")``.
"""

import enum

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["AxiResp", "AxiBurst", "AXI4Signature", "AXI4LiteSignature",
           "AXI_LEN_WIDTH", "AXI_SIZE_WIDTH", "AXI_BURST_WIDTH", "AXI_RESP_WIDTH",
           "AXI_PROT_WIDTH", "AXI_CACHE_WIDTH", "AXI_QOS_WIDTH", "AXI_4K"]


AXI_LEN_WIDTH = 8      # AxLEN: beats - 1, up to 256 beats for INCR
AXI_SIZE_WIDTH = 3     # AxSIZE: log2(bytes per beat)
AXI_BURST_WIDTH = 2
AXI_RESP_WIDTH = 2
AXI_PROT_WIDTH = 3
AXI_CACHE_WIDTH = 4
AXI_QOS_WIDTH = 4
AXI_4K = 4096          # no burst may cross a 4 KiB boundary


class AxiResp(enum.IntEnum):
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class AxiBurst(enum.IntEnum):
    FIXED = 0
    INCR = 1
    WRAP = 2


def _check_widths(addr_width, data_width, data_widths):
    if not isinstance(addr_width, int) or not 12 <= addr_width <= 64:
        raise ValueError(f"addr_width must be an integer from 12 to 64, not {addr_width!r}")
    if data_width not in data_widths:
        raise ValueError(f"data_width must be one of {data_widths}, not {data_width!r}")


class AXI4Signature(wiring.Signature):
    """AXI4 full interface, master view (no user signals, no AxREGION)."""

    def __init__(self, addr_width, data_width, id_width):
        _check_widths(addr_width, data_width, (8, 16, 32, 64, 128, 256, 512, 1024))
        if not isinstance(id_width, int) or not 1 <= id_width <= 32:
            raise ValueError(f"id_width must be an integer from 1 to 32, not {id_width!r}")
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}addr": Out(addr_width),
                f"{ch}len": Out(AXI_LEN_WIDTH),
                f"{ch}size": Out(AXI_SIZE_WIDTH),
                f"{ch}burst": Out(AXI_BURST_WIDTH),
                f"{ch}id": Out(id_width),
                f"{ch}prot": Out(AXI_PROT_WIDTH),
                f"{ch}cache": Out(AXI_CACHE_WIDTH),
                f"{ch}lock": Out(1),
                f"{ch}qos": Out(AXI_QOS_WIDTH),
                f"{ch}valid": Out(1),
                f"{ch}ready": In(1),
            })
        members.update({
            "wdata": Out(data_width),
            "wstrb": Out(data_width // 8),
            "wlast": Out(1),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(AXI_RESP_WIDTH),
            "bid": In(id_width),
            "bvalid": In(1),
            "bready": Out(1),
            "rdata": In(data_width),
            "rresp": In(AXI_RESP_WIDTH),
            "rid": In(id_width),
            "rlast": In(1),
            "rvalid": In(1),
            "rready": Out(1),
        })
        super().__init__(members)

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return f"AXI4Signature({self.addr_width}, {self.data_width}, {self.id_width})"


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite interface, master view."""

    def __init__(self, addr_width, data_width=32):
        _check_widths(addr_width, data_width, (32, 64))
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width),
            "awprot": Out(AXI_PROT_WIDTH),
            "awvalid": Out(1),
            "awready": In(1),
            "wdata": Out(data_width),
            "wstrb": Out(data_width // 8),
            "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(AXI_RESP_WIDTH),
            "bvalid": In(1),
            "bready": Out(1),
            "araddr": Out(addr_width),
            "arprot": Out(AXI_PROT_WIDTH),
            "arvalid": Out(1),
            "arready": In(1),
            "rdata": In(data_width),
            "rresp": In(AXI_RESP_WIDTH),
            "rvalid": In(1),
            "rready": Out(1),
        })

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature({self.addr_width}, {self.data_width})"
