"""Benchmark results: the derived metrics of a run, results.json, results.md and the plots.

A *run* is one workload on one backend with one dataflow; :func:`run_row` turns the
runtime's report into a flat dict with the measured and the modelled numbers side by side.
Values that were not measured are ``None`` (shown as ``-``), never estimates.
"""

import json
from pathlib import Path

from . import models


__all__ = ["run_row", "meets_target", "roofline_notes", "markdown", "runs_table", "generator_table",
           "write_json", "write_markdown", "write_plots", "STATUSES"]

# ok: measured (RTL output equal to the golden model's); mismatch: RTL output differs;
# not available: the backend cannot run here; unsupported: the workload cannot be compiled
# for this dataflow; error: the run failed.
STATUSES = ("ok", "mismatch", "not available", "unsupported", "error")


def run_row(workload, cfg, dataflow, backend, status, report=None, reason=None,
            wall_seconds=None, reference=None):
    """Measured and modelled metrics of one run. ``reference`` (the golden report) supplies
    the DMA byte counts when ``report`` is missing them."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    peak, bus = cfg.rows * cfg.cols, cfg.bus_bytes
    report = report or {}
    source = report if report.get("dma_bytes_read") is not None else (reference or {})
    read, written = source.get("dma_bytes_read"), source.get("dma_bytes_written")
    dma_bytes = read + written if read is not None and written is not None else None
    cycles = report.get("cycles")
    scalesim = models.scalesim_cycles_layers(dataflow, workload.gemms, cfg.rows, cfg.cols)
    intensity = models.arithmetic_intensity(workload.macs, dma_bytes)
    roof = (models.roofline_macs_per_cycle(intensity, peak, bus)
            if intensity is not None else None)
    row = dict(
        workload=workload.name, group=workload.group, description=workload.description,
        shape=workload.shape_text, gemms=[list(g) for g in workload.gemms],
        macs=workload.macs, dataflow=dataflow, backend=backend, status=status, reason=reason,
        cycles=cycles, ideal_cycles=workload.macs / peak,
        utilization=models.utilization(workload.macs, cfg.rows, cfg.cols, cycles),
        achieved_macs_per_cycle=workload.macs / cycles if cycles else None,
        scalesim_cycles=scalesim,
        scalesim_utilization=models.utilization(workload.macs, cfg.rows, cfg.cols, scalesim),
        dma_bytes_read=read, dma_bytes_written=written, dma_bytes=dma_bytes,
        arithmetic_intensity=intensity, roofline_macs_per_cycle=roof,
        roofline_utilization=roof / peak if roof is not None else None,
        dma_bound_cycles=models.dma_bound_cycles(dma_bytes, bus) if dma_bytes else None,
        dma_fraction=models.dma_fraction(dma_bytes, bus, cycles) if dma_bytes else None,
        instructions=report.get("instructions"), wall_seconds=wall_seconds,
        target_metric=workload.target[0] if workload.target else None,
        target=workload.target[1] if workload.target else None,
    )
    row["meets_target"] = meets_target(row)
    return row


def meets_target(row):
    """True / False against the workload's target, None without a target or a measurement."""
    if row["target_metric"] is None or row["status"] != "ok":
        return None
    value = row[row["target_metric"]]
    return None if value is None else value >= row["target"]


def roofline_notes(rows):
    """Notes on utilization targets above the roofline bound of the compiled DMA traffic
    (no hardware can meet those without a program that moves fewer bytes)."""
    notes, seen = [], set()
    for r in rows:
        key = (r["workload"], r["dataflow"])
        if (r["target_metric"] != "utilization" or r["roofline_utilization"] is None
                or key in seen):
            continue
        seen.add(key)
        if r["roofline_utilization"] < r["target"]:
            notes.append(f"{r['workload']} ({r['dataflow'].upper()}): the target utilization "
                         f"{r['target']:.0%} is above the roofline bound "
                         f"{r['roofline_utilization']:.1%} of its DMA traffic "
                         f"({r['dma_bytes']:,} bytes for {r['macs']:,} MACs).")
    return notes


# -- tables ------------------------------------------------------------------------------------

def _fmt(value, kind="int"):
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "float":
        return f"{value:.2f}"
    if kind == "si":
        for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if value >= scale:
                return f"{value / scale:.3g}{unit}"
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


def _target_text(row):
    if row["target_metric"] is None:
        return ""
    name = "util" if row["target_metric"] == "utilization" else "DMA"
    verdict = {True: " met", False: " MISSED", None: ""}[row["meets_target"]]
    return f"{name} >= {row['target']:.0%}{verdict}"


def markdown(header, rows):
    """A GitHub Markdown table; ``rows`` are lists of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |"
              for row in rows]
    return "\n".join(lines)


RUN_COLUMNS = ("workload", "M x K x N", "MACs", "flow", "backend", "cycles", "util",
               "SCALE-Sim cycles", "SCALE-Sim util", "MAC/B", "roofline util", "DMA bound",
               "target", "status")


def runs_table(rows):
    cells = []
    for r in rows:
        status = r["status"] + (f": {r['reason']}" if r["reason"] else "")
        cells.append([r["workload"], r["shape"], _fmt(r["macs"], "si"), r["dataflow"],
                      r["backend"], _fmt(r["cycles"]), _fmt(r["utilization"], "pct"),
                      _fmt(r["scalesim_cycles"]), _fmt(r["scalesim_utilization"], "pct"),
                      _fmt(r["arithmetic_intensity"], "float"),
                      _fmt(r["roofline_utilization"], "pct"),
                      _fmt(r["dma_fraction"], "pct"), _target_text(r), status])
    return markdown(RUN_COLUMNS, cells)


def generator_table(results):
    cells = [[f"{g['size']}x{g['size']}", f"{g['accumulator_kib']} / {g['scratchpad_kib']}",
              _fmt(g.get("seconds"), "float"), _fmt(g.get("peak_rss_mib")),
              _fmt(g.get("verilog_mib"), "float"),
              g["status"] + (f": {g['reason']}" if g.get("reason") else "")]
             for g in results]
    return markdown(("array", "acc / sp KiB", "seconds", "peak RSS MiB", "Verilog MiB",
                     "status"), cells)


# -- files -------------------------------------------------------------------------------------

def write_json(path, results):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def write_markdown(path, results, plots=()):
    cfg = results["config"]
    lines = [
        "# Benchmark results", "",
        f"Array {cfg['rows']}x{cfg['cols']} (peak {results['peak_macs_per_cycle']} MACs/cycle), "
        f"AXI {cfg['dma_data_width']}-bit ({results['bus_bytes_per_cycle']} bytes/cycle), "
        f"dataflow {cfg['dataflow']}. Cycles are the hardware's PERF_CYCLES (start to done, all "
        "DMA included) in RTL simulation with cocotbext-axi's AxiRam as DRAM; the golden "
        "backend has no timing. util = MACs / (rows*cols) / cycles; SCALE-Sim = compute-only "
        "analytic cycles; MAC/B = MACs per DMA byte; roofline util = min(peak, MAC/B * bus "
        "bytes) / peak; DMA bound = (DMA bytes / bus bytes) / cycles.", "",
    ]
    if results["runs"]:
        lines += ["## Workloads", "", runs_table(results["runs"]), ""]
    if results["generator"]:
        lines += ["## Generator scale (`python -m hw verilog --rows N --cols N`)", "",
                  generator_table(results["generator"]), ""]
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    Path(path).write_text("\n".join(lines))


# -- plots -------------------------------------------------------------------------------------

def write_plots(out_dir, results):
    """utilization.png, roofline.png and generator.png (the ones there is data for); returns
    their paths. Needs matplotlib (the ``bench`` extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    runs = results["runs"]
    if runs:
        paths.append(_plot_utilization(plt, out_dir / "utilization.png", runs))
        paths.append(_plot_roofline(plt, out_dir / "roofline.png", runs,
                                    results["peak_macs_per_cycle"],
                                    results["bus_bytes_per_cycle"]))
    if any(g["status"] == "ok" for g in results["generator"]):
        paths.append(_plot_generator(plt, out_dir / "generator.png", results["generator"]))
    return paths


def _measured(runs):
    return [r for r in runs if r["status"] == "ok" and r["cycles"]]


def _model_runs(runs):
    """One row per (workload, dataflow) for the model curves."""
    seen, rows = set(), []
    for r in runs:
        if r["status"] in ("unsupported",) or (r["workload"], r["dataflow"]) in seen:
            continue
        seen.add((r["workload"], r["dataflow"]))
        rows.append(r)
    return rows


def _plot_utilization(plt, path, runs):
    fig, (ax_gemm, ax_layers) = plt.subplots(1, 2, figsize=(14, 5.5),
                                             gridspec_kw=dict(width_ratios=[1, 2]))
    models_rows = _model_runs(runs)
    for flow in sorted({r["dataflow"] for r in models_rows}):
        gemm = sorted((r for r in models_rows if r["group"] == "gemm" and r["dataflow"] == flow),
                      key=lambda r: r["macs"])
        sizes = [round(r["macs"] ** (1 / 3)) for r in gemm]
        ax_gemm.plot(sizes, [r["scalesim_utilization"] for r in gemm], "--o", mfc="none",
                     label=f"SCALE-Sim {flow.upper()}")
        roof = [(n, r["roofline_utilization"]) for n, r in zip(sizes, gemm)
                if r["roofline_utilization"] is not None]
        if roof:
            ax_gemm.plot(*zip(*roof), ":", color="grey", label=f"roofline bound {flow.upper()}")
    measured = _measured(runs)
    for key in sorted({(r["backend"], r["dataflow"]) for r in measured}):
        gemm = sorted((r for r in measured if r["group"] == "gemm"
                       and (r["backend"], r["dataflow"]) == key), key=lambda r: r["macs"])
        if gemm:
            ax_gemm.plot([round(r["macs"] ** (1 / 3)) for r in gemm],
                         [r["utilization"] for r in gemm], "-s",
                         label=f"{key[0]} {key[1].upper()} (measured)")
    ax_gemm.set_xscale("log", base=2)
    ax_gemm.set_xlabel("GEMM size n (n x n x n)")
    ax_gemm.set_ylabel("utilization")
    ax_gemm.set_ylim(0, 1.05)
    ax_gemm.set_title("GEMM sweep")
    ax_gemm.grid(True, alpha=0.3)
    ax_gemm.legend(fontsize=8)

    layers = [r for r in models_rows if r["group"] != "gemm"]
    names = list(dict.fromkeys(r["workload"] for r in layers))
    series = [(f"SCALE-Sim {flow.upper()}", {r["workload"]: r["scalesim_utilization"]
                                             for r in layers if r["dataflow"] == flow})
              for flow in sorted({r["dataflow"] for r in layers})]
    for key in sorted({(r["backend"], r["dataflow"]) for r in measured}):
        series.append((f"{key[0]} {key[1].upper()} (measured)",
                       {r["workload"]: r["utilization"] for r in measured
                        if r["group"] != "gemm" and (r["backend"], r["dataflow"]) == key}))
    width = 0.8 / max(len(series), 1)
    for index, (label, values) in enumerate(series):
        xs = [i + (index - (len(series) - 1) / 2) * width for i in range(len(names))]
        ax_layers.bar(xs, [values.get(n) or 0 for n in names], width, label=label,
                      hatch="//" if label.startswith("SCALE") else None,
                      fill=not label.startswith("SCALE"))
    ax_layers.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax_layers.set_ylim(0, 1.05)
    ax_layers.set_ylabel("utilization")
    ax_layers.set_title("conv layers, MLP, dense (measured vs SCALE-Sim model)")
    ax_layers.grid(True, axis="y", alpha=0.3)
    ax_layers.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_roofline(plt, path, runs, peak, bus):
    fig, ax = plt.subplots(figsize=(8, 6))
    points = [r for r in _model_runs(runs) if r["arithmetic_intensity"]]
    intensities = [r["arithmetic_intensity"] for r in points] or [peak / bus]
    lo = min(min(intensities), peak / bus) / 4
    hi = max(max(intensities), peak / bus) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [models.roofline_macs_per_cycle(x, peak, bus) for x in xs], "k-",
            label=f"roof: {peak} MACs/cycle, {bus} bytes/cycle")
    ax.plot([r["arithmetic_intensity"] for r in points],
            [r["macs"] / r["scalesim_cycles"] for r in points], "o", mfc="none", color="grey",
            label="SCALE-Sim model (compute only)")
    measured = [r for r in _measured(runs) if r["arithmetic_intensity"]]
    for key in sorted({(r["backend"], r["dataflow"]) for r in measured}):
        group = [r for r in measured if (r["backend"], r["dataflow"]) == key]
        ax.plot([r["arithmetic_intensity"] for r in group],
                [r["achieved_macs_per_cycle"] for r in group], "s",
                label=f"{key[0]} {key[1].upper()} (measured)")
    for r in points:
        ax.annotate(r["workload"], (r["arithmetic_intensity"], r["macs"] / r["scalesim_cycles"]),
                    fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs per DMA byte)")
    ax.set_ylabel("MACs per cycle")
    ax.set_ylim(top=peak * 2, bottom=min([1.0] + [models.roofline_macs_per_cycle(lo, peak, bus)]))
    ax.set_title("Roofline")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_generator(plt, path, generator):
    ok = [g for g in generator if g["status"] == "ok"]
    fig, ax_time = plt.subplots(figsize=(7, 4.5))
    sizes = [g["size"] for g in ok]
    ax_time.plot(sizes, [g["seconds"] for g in ok], "-o", color="tab:blue", label="seconds")
    ax_time.set_xscale("log", base=2)
    ax_time.set_yscale("log")
    ax_time.set_xlabel("array size N (N x N)")
    ax_time.set_ylabel("generator wall time (s)", color="tab:blue")
    ax_rss = ax_time.twinx()
    ax_rss.plot(sizes, [g["peak_rss_mib"] for g in ok], "-s", color="tab:red", label="peak RSS")
    ax_rss.set_ylabel("peak RSS (MiB)", color="tab:red")
    ax_rss.set_ylim(bottom=0, top=max(g["peak_rss_mib"] for g in ok) * 1.2)
    ax_time.set_title("python -m hw verilog")
    ax_time.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
