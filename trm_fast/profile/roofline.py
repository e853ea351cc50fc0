"""Roofline of a profile: each kernel's arithmetic intensity (FLOPs per byte) against its achieved FLOP
rate, under the compute ceiling (the best cuBLAS rate at the model's GEMM shapes) and the bandwidth ceiling
(device-to-device copy), both measured in the same run (trm_fast.bench.ceilings)."""

from .kernels import by_kernel

_COLORS = {"GEMM": "tab:blue", "attention": "tab:purple", "trm_fast kernels": "tab:green",
           "inductor (Triton)": "tab:orange", "optimizer": "tab:brown"}


def plot(records, path: str, peak_tflops=None, copy_tb_per_s=None, title: str = "", top_labels: int = 6):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    kernels = {n: g for n, g in by_kernel(records).items() if g.flops > 0 and g.bytes > 0 and g.us > 0}
    total_us = sum(g.us for g in by_kernel(records).values()) or 1.0
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    xs = [g.flops / g.bytes for g in kernels.values()]
    roofs = []
    if peak_tflops and copy_tb_per_s:
        lo, hi = min(xs + [0.05]) / 2, max(xs + [2000]) * 2
        grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(grid, [min(peak_tflops, x * copy_tb_per_s) for x in grid], color="black", linewidth=1.5)
        roofs.append(Line2D([], [], color="black", label=f"ceilings: {peak_tflops:.0f} TFLOP/s (best cuBLAS rate "
                            f"at the model's shapes), {copy_tb_per_s:.2f} TB/s (d2d copy)"))
    seen = set()
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1].us)
    for rank, (name, g) in enumerate(ranked):
        x, y = g.flops / g.bytes, g.flops / (g.us * 1e-6) / 1e12
        cat = g.category
        ax.scatter([x], [y], s=20 + 2000 * g.us / total_us, alpha=0.6, color=_COLORS.get(cat, "tab:gray"),
                   edgecolors="black", linewidths=0.4)
        seen.add(cat)
        if rank < top_labels:  # staggered, so kernels at one rate (the GEMMs) stay readable
            ax.annotate(f"{name[:40]} ({100 * g.us / total_us:.0f}%)", (x, y), fontsize=7,
                        xytext=(6, -10 - 11 * rank), textcoords="offset points",
                        arrowprops=dict(arrowstyle="-", linewidth=0.4, color="gray"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, bytes estimated from op shapes)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.grid(True, which="both", alpha=0.3)
    handles = roofs + [Line2D([], [], marker="o", linestyle="", color=_COLORS.get(cat, "tab:gray"), label=cat)
                       for cat in sorted(seen)]
    ax.legend(handles=handles, fontsize=8, title="marker area = share of kernel time", title_fontsize=8,
              loc="lower right")
    if not (peak_tflops and copy_tb_per_s):
        title = (title + "\n" if title else "") + "no ceilings: measured on a GPU only"
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
