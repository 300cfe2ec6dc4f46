"""DMA throughput: bytes per cycle of a long read and a long write, no backpressure.

``python -m bench.dma_throughput [--widths 32 64 128] [--kib 64]`` builds the DMA of the
default Config at each bus width, runs this module as the cocotb test (reusing
sim/tb/tb_dma.py's drivers and AxiRam), prints a table and writes build/bench/dma.json.
Cycles count from the command handshake to the status handshake.

``--row-bytes B --stride S`` moves the same bytes as rows of ``B`` bytes ``S`` apart (the
scratchpad-row loads of a GEMM: ``--row-bytes 16 --stride 576``); ``--outstanding N``
overrides ``Config.max_outstanding``.
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

import cocotb

from hw.config import Config
from sim.tb.tb_dma import MEM_BYTES, DmaTb, config_from_env, run_dma_tb


REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "build" / "bench"


@cocotb.test()
async def measure(dut):
    cfg = config_from_env()
    tb = DmaTb(dut, cfg, random.Random(0))
    await tb.start()
    total = int(os.environ["BENCH_BYTES"])
    row_bytes = int(os.environ["BENCH_ROW_BYTES"])
    cmd = {"addr": 0x1000, "rows": total // row_bytes, "row_bytes": row_bytes,
           "stride": int(os.environ["BENCH_STRIDE"])}
    beats, status, read_cycles = await tb.read(cmd)
    assert status[1] == 0 and status[0] == 0 and len(beats) == total // cfg.bus_bytes
    rows_data = [bytes(row_bytes)] * cmd["rows"]
    span = (cmd["rows"] - 1) * cmd["stride"] + row_bytes
    status, write_cycles = await tb.write({**cmd, "addr": 0x1000 + span}, rows_data)
    assert status == (0, 0)
    result = {"bus_bytes": cfg.bus_bytes, "bytes": total,
              "read_cycles": read_cycles, "write_cycles": write_cycles}
    Path(os.environ["BENCH_OUT"]).write_text(json.dumps(result))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--kib", type=int, default=64, help="transfer size in KiB")
    parser.add_argument("--row-bytes", type=int, default=4096, help="bytes per row")
    parser.add_argument("--stride", type=int, default=None,
                        help="bytes from row to row (default: the row size, contiguous)")
    parser.add_argument("--outstanding", type=int, default=None,
                        help="Config.max_outstanding (default: the Config default)")
    args = parser.parse_args(argv)
    stride = args.row_bytes if args.stride is None else args.stride
    rows = args.kib * 1024 // args.row_bytes
    if rows < 1 or 2 * ((rows - 1) * stride + args.row_bytes) + 0x1000 > MEM_BYTES:
        parser.error("--kib, --row-bytes and --stride must give at least one row and fit "
                     f"twice in the {MEM_BYTES // 1024} KiB test memory")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    results = []
    for width in args.widths:
        knobs = {} if args.outstanding is None else {"max_outstanding": args.outstanding}
        cfg = Config(dma_data_width=width, **knobs)
        out = OUT_DIR / f"dma_w{width}.json"
        suffix = "" if args.outstanding is None else f"_o{args.outstanding}"
        run_dma_tb(cfg, f"bench_dma_w{width}{suffix}", test_module="bench.dma_throughput",
                   extra_env={"BENCH_OUT": out, "BENCH_BYTES": rows * args.row_bytes,
                              "BENCH_ROW_BYTES": args.row_bytes, "BENCH_STRIDE": stride})
        r = json.loads(out.read_text())
        out.unlink()
        for direction in ("read", "write"):
            per_cycle = r["bytes"] / r[f"{direction}_cycles"]
            results.append({"width": width, "direction": direction, "bytes": r["bytes"],
                            "cycles": r[f"{direction}_cycles"],
                            "bytes_per_cycle": round(per_cycle, 3),
                            "bus_efficiency": round(per_cycle / r["bus_bytes"], 4)})
    print(f"{'width':>5} {'dir':>5} {'bytes':>7} {'cycles':>7} {'B/cycle':>8} {'of bus':>7}")
    for r in results:
        print(f"{r['width']:>5} {r['direction']:>5} {r['bytes']:>7} {r['cycles']:>7}"
              f" {r['bytes_per_cycle']:>8.3f} {100 * r['bus_efficiency']:>6.1f}%")
    (OUT_DIR / "dma.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
