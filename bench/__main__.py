"""``make bench``: utilization, SCALE-Sim comparison, roofline and generator timing.

Runs the workloads (:mod:`bench.workloads`) on the golden backend (the reference output and
DMA byte counts) and on the RTL backends (cycles from the hardware's PERF_CYCLES), checks
every RTL output against the golden one, times the generator at several array sizes, and
writes ``results.json``, ``results.md`` and PNG plots into ``build/bench/`` (``--out``).

Large RTL workloads take minutes each: ``--quick`` keeps the small ones, ``--only`` picks
groups (``gemm,conv,mlp,dense,gen``), ``--workloads`` picks names.
"""

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from hw.cli import add_config_arguments, config_from_args
from hw.config import ConfigError
from sw.compiler import CompileError, choose_dataflow
from sw.runtime import Runtime

from . import generator, report, workloads


REPO_ROOT = Path(__file__).resolve().parent.parent
GOLDEN = "golden"
AUTO = "auto"
SECTIONS = workloads.GROUPS + ("gen",)


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only workloads up to {workloads.QUICK_MAX_MACS:,} MACs and "
                             "generator sizes up to 32")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run, from {','.join(SECTIONS)}")
    parser.add_argument("--workloads", help="comma-separated workload names (default: all)")
    parser.add_argument("--backends", default="golden,verilator",
                        help="comma-separated runtime backends (default golden,verilator)")
    parser.add_argument("--dataflows", default="auto",
                        help="comma-separated: ws, os, auto (the compiler's choice: OS for a "
                             "GEMM with fewer rows than the array, else WS; default auto)")
    parser.add_argument("--gen-sizes", default=None,
                        help="comma-separated N for the generator timing (default "
                             f"{','.join(map(str, generator.DEFAULT_SIZES))}; 16,32 with --quick)")
    parser.add_argument("--gen-timeout", type=float, default=3600,
                        help="seconds allowed per generator size (default 3600)")
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "bench"))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    for section in _csv(args.only):
        if section not in SECTIONS:
            parser.error(f"--only: unknown section {section!r} (choose from {', '.join(SECTIONS)})")
    for flow in _csv(args.dataflows):
        if flow not in ("ws", "os", AUTO):
            parser.error(f"--dataflows: {flow!r} is not ws, os or {AUTO}")
    return args


def log(message):
    print(message, file=sys.stderr, flush=True)


class Bench:
    """Runs workloads on backends and collects rows; keeps results.json current."""

    def __init__(self, cfg, backend_names, dataflows, out_dir):
        self.cfg = cfg
        self.dataflows = dataflows
        self.out_dir = Path(out_dir)
        self.rtl_names = [name for name in backend_names if name != GOLDEN]
        self.record_golden = GOLDEN in backend_names
        self.golden = Runtime(cfg, GOLDEN)
        self.runtimes, self.unavailable = {}, {}
        for name in self.rtl_names:
            try:
                self.runtimes[name] = Runtime(cfg, name)
            except (ValueError, ImportError) as e:
                self.unavailable[name] = str(e)
        self.results = dict(
            config=cfg.to_dict(), peak_macs_per_cycle=cfg.rows * cfg.cols,
            bus_bytes_per_cycle=cfg.bus_bytes, host=platform.node(),
            python=platform.python_version(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
            runs=[], generator=[], notes=[
                "Depthwise convolutions (MobileNet) are not run: the runtime has no grouped "
                "convolution; MobileNet's stem and pointwise layers are.",
                "SCALE-Sim cycles model the array only (no DMA, no pipeline drain of the "
                "output path); measured cycles include every DMA transfer.",
            ])

    def save(self):
        report.write_json(self.out_dir / "results.json", self.results)

    def run_workloads(self, chosen):
        total = len(chosen) * len(self.dataflows)
        index = 0
        for workload in chosen:
            inputs = workload.make_inputs()
            for flow in self.dataflows:
                if flow == AUTO:
                    single = len(workload.gemms) == 1
                    flow = choose_dataflow(self.cfg, None,
                                           workload.gemms[0][0] if single else None).name.lower()
                index += 1
                log(f"[{index}/{total}] {workload.name} ({workload.shape_text}, "
                    f"{workload.macs:,} MACs) {flow.upper()}")
                self._run_one(workload, inputs, flow)
                self.save()

    def _add(self, *args, **kwargs):
        row = report.run_row(*args, **kwargs)
        self.results["runs"].append(row)
        return row

    def _run_one(self, workload, inputs, flow):
        cfg = self.cfg
        start = time.monotonic()
        try:
            expected, golden_report = workload.run(self.golden, inputs, flow)
        except CompileError as e:
            for name in ([GOLDEN] if self.record_golden else []) + self.rtl_names:
                self._add(workload, cfg, flow, name, "unsupported", reason=str(e))
            log(f"    unsupported: {e}")
            return
        if self.record_golden:
            self._add(workload, cfg, flow, GOLDEN, "ok", golden_report,
                      wall_seconds=round(time.monotonic() - start, 2))
            log(f"    golden: {golden_report['dma_bytes_read'] + golden_report['dma_bytes_written']:,}"
                f" DMA bytes ({time.monotonic() - start:.1f} s)")
        for name in self.rtl_names:
            if name in self.unavailable:
                self._add(workload, cfg, flow, name, "not available",
                          reason=self.unavailable[name], reference=golden_report)
                log(f"    {name}: not available ({self.unavailable[name]})")
                continue
            self._run_rtl(workload, inputs, flow, name, expected, golden_report)

    def _run_rtl(self, workload, inputs, flow, name, expected, golden_report):
        start = time.monotonic()
        log(f"    {name}: running ...")
        try:
            output, rtl_report = workload.run(self.runtimes[name], inputs, flow)
        except Exception as e:     # a broken simulator build must not stop the other runs
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if not any(r["backend"] == name and r["status"] in ("ok", "mismatch")
                       for r in self.results["runs"]):
                # The first run of this backend failed: most likely it cannot build here, so
                # the remaining workloads are reported instead of failing the same way.
                self.unavailable[name] = f"its first run failed ({reason})"
            self._add(workload, self.cfg, flow, name, "error", reason=reason,
                      reference=golden_report, wall_seconds=round(time.monotonic() - start, 2))
            log(f"    {name}: error: {reason}")
            return
        wall = round(time.monotonic() - start, 2)
        same = _outputs_equal(output, expected)
        row = self._add(workload, self.cfg, flow, name, "ok" if same else "mismatch", rtl_report,
                        reason=None if same else "output differs from the golden model",
                        wall_seconds=wall, reference=golden_report)
        util = row["utilization"]
        extra = (f", DMA bound {row['dma_fraction']:.1%}"
                 if row["target_metric"] == "dma_fraction" and row["dma_fraction"] else "")
        log(f"    {name}: {row['cycles']:,} cycles, util {util:.1%} (SCALE-Sim "
            f"{row['scalesim_utilization']:.1%}){extra}, {wall:.1f} s"
            + ("" if same else "  OUTPUT MISMATCH"))


def _outputs_equal(a, b):
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_outputs_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ConfigError, OSError, ValueError) as e:
        log(f"error: {e}")
        return 2
    sections = set(_csv(args.only))
    names = set(_csv(args.workloads)) if args.workloads else None
    chosen = workloads.select(sections & set(workloads.GROUPS), args.quick, names)
    if args.list:
        for w in workloads.all_workloads():
            print(f"{w.name:<24} {w.group:<6} {w.macs:>13,} MACs  {w.shape_text:<22} {w.description}")
        return 0
    if names and not chosen:
        log(f"error: no workload matches --workloads {args.workloads} (see --list)")
        return 2
    if args.gen_sizes is not None:
        gen_sizes = [int(n) for n in _csv(args.gen_sizes)]
    else:
        gen_sizes = [n for n in generator.DEFAULT_SIZES if not args.quick or n <= 32]
    bench = Bench(cfg, _csv(args.backends), _csv(args.dataflows), args.out)
    log(f"bench: {cfg.rows}x{cfg.cols} array, {len(chosen)} workloads x "
        f"{len(bench.dataflows)} dataflow(s) on {args.backends}; results in {args.out}")
    try:
        bench.run_workloads(chosen)
        if "gen" in sections and gen_sizes:
            bench.results["generator"] = generator.measure_sizes(
                gen_sizes, Path(args.out) / "gen", args.gen_timeout, log=log)
    except KeyboardInterrupt:
        bench.results["notes"].append("interrupted: the results are partial")
        log("interrupted: writing the partial results")
    bench.results["notes"] += report.roofline_notes(bench.results["runs"])
    bench.save()
    plots = []
    if not args.no_plots:
        try:
            plots = report.write_plots(args.out, bench.results)
        except ImportError:
            bench.results["notes"].append("no plots: matplotlib is not installed "
                                          "(pip install -e '.[bench]')")
            log("no plots: matplotlib is not installed (pip install -e '.[bench]')")
    report.write_markdown(Path(args.out) / "results.md", bench.results, plots)
    bench.save()
    if bench.results["runs"]:
        print(report.runs_table(bench.results["runs"]))
    if bench.results["generator"]:
        print()
        print(report.generator_table(bench.results["generator"]))
    print(f"\nwrote {Path(args.out) / 'results.json'}, {Path(args.out) / 'results.md'}"
          + "".join(f", {p}" for p in plots))
    broken = [r for r in bench.results["runs"] if r["status"] in ("mismatch", "error")]
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
