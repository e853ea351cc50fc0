"""Bench rows for people: one line per row while measuring, a table at the end, a PNG of throughput
against batch size with the engine's (else fused's) speedups over reference-compile."""

import json
from collections import defaultdict

from ..disk import atomic_file
from . import clocks

REFERENCE = "reference-compile"  # the yardstick of every ratio (../shared/BENCH.md)
HEADLINE = ("engine", "fused")  # whose ratio to the yardstick the plot shows: the first measured
TIE = 0.03
NOISY = 0.2  # a spread (IQR) of the repeats above this fraction of their median: the timing says little
_COLORS = {"engine": "tab:red", "fused": "tab:blue", "reference-eager": "tab:green", "reference-compile": "tab:orange",
           "reference-graphs": "tab:purple", "engine+recompute": "tab:pink",
           "engine+recompute=mlp": "tab:brown"}


def _color(backend: str) -> str:
    return _COLORS.get(backend, "tab:gray")


def label(row) -> str:
    """The row's backend, and how its training step differs from that backend's default."""
    mode = row.get("recompute")
    return row["backend"] + ("" if not mode else "+recompute" if mode is True else f"+recompute={mode}")


def _num(value, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def _per_s(value) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _rate(row) -> str:
    value = row.get("puzzles_per_s") if row["mode"] == "infer" else row.get("samples_per_s")
    return "-" if value is None else _per_s(value)


def row_line(row) -> str:
    """`sudoku_attn train b768 fused: 105.3 ms [104.9-106.0], 348 TFLOP/s, 7,293 samples/s, 18.1 GiB`."""
    head = f"{row['config']} {row['mode']} b{row['batch']} {label(row)}"
    if "error" in row:
        return f"{head}: FAILED {row['error']}"
    text = (f"{head}: {row['ms']:.4g} ms [{row['ms_min']:.4g}-{row['ms_max']:.4g}], {row['tflops']:.3g} TFLOP/s, "
            f"{_rate(row)} {'puzzles' if row['mode'] == 'infer' else 'samples'}/s")
    if row.get("peak_gib") is not None:
        text += f", {row['peak_gib']:.1f} GiB"
    return text + f", warm-up {row['warmup_s']:.1f} s"


COLUMNS = [  # header, width, cell
    ("config", 12, lambda r, ref: r["config"]),
    ("mode", 5, lambda r, ref: r["mode"]),
    ("batch", 5, lambda r, ref: str(r["batch"])),
    ("backend", 17, lambda r, ref: label(r)),
    ("ms", 8, lambda r, ref: _num(r.get("ms"), ".4g", "FAILED")),
    ("IQR", 6, lambda r, ref: _num(r.get("ms_iqr"), ".3g")),
    ("warm-up s", 9, lambda r, ref: _num(r.get("warmup_s"), ".1f")),
    ("GiB", 5, lambda r, ref: _num(r.get("peak_gib"), ".1f")),
    ("TFLOP/s", 7, lambda r, ref: _num(r.get("tflops"), ".3g")),
    ("per s", 9, lambda r, ref: _rate(r)),
    ("%compute", 8, lambda r, ref: _num(r.get("compute_frac") and 100 * r["compute_frac"], ".0f")),
    ("%copy BW", 8, lambda r, ref: _num(r.get("bandwidth_frac") and 100 * r["bandwidth_frac"], ".0f")),
    ("x floor", 7, lambda r, ref: _num(r.get("floor_ms") and r.get("ms") and r["ms"] / r["floor_ms"], ".2f")),
    ("vs compile", 10, lambda r, ref: _num(ref and r.get("ms") and ref / r["ms"], ".2f")),
]


def _reference_ms(rows):
    return {(r["config"], r["mode"], r["batch"]): r["ms"] for r in rows if r["backend"] == REFERENCE and "ms" in r}


def format_table(rows) -> str:
    """The rows as an aligned table. `per s` is puzzles/s for infer, samples/s for train; `%compute` is the
    floor time over the measured time (the share of the cuBLAS/attention rate reached); `%copy BW` the
    counted bytes per second over the measured copy bandwidth; `vs compile` reference-compile's time over
    this row's (above 1: faster than the yardstick)."""
    ref = _reference_ms(rows)
    lines = ["  ".join(h.rjust(w) if i > 3 else h.ljust(w) for i, (h, w, _) in enumerate(COLUMNS))]
    lines.append("-" * len(lines[0]))
    for r in rows:
        ref_ms = ref.get((r["config"], r["mode"], r["batch"]))
        cells = [cell(r, ref_ms) for _, _, cell in COLUMNS]
        lines.append("  ".join(c.rjust(w) if i > 3 else c.ljust(w) for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS))))
    for r in rows:
        if "error" in r:
            lines.append(f"FAILED {r['config']} {r['mode']} b{r['batch']} {r['backend']}: {r['error']}")
    return "\n".join(lines)


def _noisy(row) -> bool:
    return row.get("ms") is not None and row.get("ms_iqr") is not None and row["ms_iqr"] > NOISY * row["ms"]


def noise_warnings(rows):
    """A line for every row whose repeats spread more than NOISY of their median (a busy machine)."""
    return [f"{r['config']} {r['mode']} b{r['batch']} {r['backend']}: the repeats spread {r['ms_iqr'] / r['ms']:.0%} "
            f"of their median (IQR {r['ms_iqr']:.3g} ms of {r['ms']:.4g} ms): the machine is busy or the unit too "
            "short; rerun on an idle machine or with more --reps" for r in rows if _noisy(r)]


def clock_warnings(rows):
    """A line for every row timed while the GPU named a slowdown (trm_fast/bench/clocks.py): its time says what
    that GPU did under the brake, not what the code takes."""
    return [f"{r['config']} {r['mode']} b{r['batch']} {r['backend']}: timed while the GPU named "
            f"{', '.join(clocks.slowdowns(r))} (SM clock {r['sm_clock_mhz']:.0f} MHz median, "
            f"{r['sm_clock_min_mhz']:.0f} at least, of {r['sm_clock_max_mhz']:.0f}): rerun on a cool, idle GPU"
            for r in rows if clocks.slowdowns(r)]


def floor_warnings(rows):
    """A line for every row faster than its floor: a floor is what nothing can beat without doing less work, so
    one that a row beats is wrong (../shared/BENCH.md), and every `x floor` of its run with it."""
    return [f"{r['config']} {r['mode']} b{r['batch']} {r['backend']}: {r['ms']:.4g} ms beats its floor of "
            f"{r['floor_ms']:.4g} ms: the floor is wrong (trm_fast/bench/ceilings.py), and so is every x floor of "
            "this run" for r in rows if r.get("ms") is not None and r.get("floor_ms") and r["ms"] < r["floor_ms"]]


def _rate_spread(row, rate):
    """(below, above) `rate`: the throughput at the median time minus and plus half the IQR."""
    half = (row.get("ms_iqr") or 0.0) / 2
    return rate - rate * row["ms"] / (row["ms"] + half), rate * row["ms"] / max(row["ms"] - half, 1e-9) - rate


def headline(rows) -> str:
    return next((b for b in HEADLINE if any(r["backend"] == b for r in rows)), HEADLINE[-1])


def speedups(rows, backend=None):
    """{(config, mode, batch): reference-compile ms / `backend` ms (default: the headline backend)} for every
    pair measured in these rows."""
    backend, ref = backend or headline(rows), _reference_ms(rows)
    return {(r["config"], r["mode"], r["batch"]): ref[(r["config"], r["mode"], r["batch"])] / r["ms"]
            for r in rows if label(r) == backend and "ms" in r and (r["config"], r["mode"], r["batch"]) in ref}


def plot(rows, path: str, title: str = ""):
    """Throughput against batch size, one panel per (config, mode) and one line per backend, with the spread
    of the repeats (the IQR) as error bars and noisy rows (see NOISY) hatched or hollow; below, the speedup of
    the headline backend (engine, else fused) over reference-compile wherever both ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if "ms" in r:
            rate = r["puzzles_per_s"] if r["mode"] == "infer" else r["samples_per_s"]
            panels[(r["config"], r["mode"])][label(r)].append((r["batch"], rate, r))
    best = headline(rows)
    ratio = speedups(rows, best)
    ncols = min(4, max(1, len(panels)))
    nrows = -(-len(panels) // ncols) + (1 if ratio else 0)
    fig = plt.figure(figsize=(4.2 * ncols, 3.4 * max(1, nrows)), layout="constrained")
    grid = fig.add_gridspec(max(1, nrows), ncols)
    for i, ((config, mode), by_backend) in enumerate(sorted(panels.items())):
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        batches = sorted({b for points in by_backend.values() for b, _, _ in points})
        if len(batches) == 1:  # one batch size: a bar per backend says more than one point per line
            names = sorted(by_backend)
            points = [by_backend[n][0] for n in names]
            values = [v for _, v, _ in points]
            bars = ax.bar(range(len(names)), values, color=[_color(n) for n in names], capsize=3,
                          yerr=list(zip(*(_rate_spread(r, v) for _, v, r in points))))
            for bar, (_, _, r) in zip(bars, points):
                bar.set_hatch("//" if _noisy(r) else "")
            ax.bar_label(bars, labels=[_per_s(v) + (" noisy" if _noisy(r) else "") for _, v, r in points], fontsize=7)
            ax.set_xticks(range(len(names)), [n.replace("reference-", "ref-") for n in names], fontsize=8)
            ax.set_xlabel(f"batch size {batches[0]}")
        else:
            for backend, points in sorted(by_backend.items()):
                points.sort(key=lambda p: p[0])
                ax.errorbar([b for b, _, _ in points], [v for _, v, _ in points], label=backend, color=_color(backend),
                            yerr=list(zip(*(_rate_spread(r, v) for _, v, r in points))), marker="o", capsize=3)
                noisy = [(b, v) for b, v, r in points if _noisy(r)]
                if noisy:  # hollow rings around the noisy points
                    ax.scatter(*zip(*noisy), s=150, facecolors="none", edgecolors="black", zorder=3)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(f"{config} {mode}")
        ax.set_ylabel("puzzles/s (16-step eval)" if mode == "infer" else "samples/s (train step)")
        ax.grid(True, which="both", alpha=0.3)
    if ratio:
        ax = fig.add_subplot(grid[-1, :])
        keys = sorted(ratio)
        labels = [f"{c}\n{m} b{b}" for c, m, b in keys]
        values = [ratio[k] for k in keys]
        # within the run-to-run spread of a few percent a ratio is a tie, not a win or a loss
        bars = ax.bar(range(len(keys)), values, color=["tab:green" if v > 1 + TIE else "tab:red" if v < 1 - TIE
                                                       else "tab:gray" for v in values])
        ax.bar_label(bars, labels=[f"{v:.2f}x" for v in values], fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(keys)), labels, fontsize=7)
        ax.set_ylabel(f"reference-compile ms / {best} ms\n(speedup, same run)")
        ax.set_title(f"{best} against reference-compile (gray: within {TIE:.0%}, a tie)", fontsize=9)
    if any(_noisy(r) for r in rows):
        title = (title + "\n" if title else "") + f"hatched or ringed: repeats spread > {NOISY:.0%} of the median"
    if title:
        fig.suptitle(title)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def emit(row: dict, path=None, shown=None):
    """One row of an experiment script (bench/*.py): `shown` (the row itself unless given) printed as a JSON line
    at once, and the whole row appended to the JSON-lines file at `path` where one is given."""
    print(json.dumps(row if shown is None else shown), flush=True)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
