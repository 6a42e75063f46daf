#!/usr/bin/env python3
"""SVG plots of `kubedrs compare` results: python plot.py docs/benchmarks

Reads compare.csv and compare-series.csv from the folder, writes beside them:
  compare-<pool>-<workload>.svg  bars per policy: CPU demand not met, imbalance, hottest node p99, migrations
  series-<pool>-<workload>.svg   the hottest node's CPU load over time, one line per policy
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "kubedrs"  # stable ids: the same data gives the same file
matplotlib.rcParams["svg.fonttype"] = "none"


def color(policy):
    if policy.startswith("kubedrs"):
        return "#1f6feb"
    return {"kube-scheduler": "#8b949e", "descheduler-20/50": "#d29922", "descheduler-relieve": "#db6d28",
            "proxlb": "#8957e5", "optimum": "#2da44e"}.get(policy, "#6e7781")


def main(folder):
    folder = Path(folder)
    rows = list(csv.DictReader(open(folder / "compare.csv")))
    groups = defaultdict(list)
    for r in rows:
        groups[(r["pool"], r["workload"])].append(r)
    for (pool, workload), rs in groups.items():
        names = [r["policy"] for r in rs]
        cols = [color(n) for n in names]
        panels = [
            ("CPU demand not met (%)", [100 * (1 - float(r["cpu_met"])) for r in rs]),
            ("imbalance, mean (engine measure)", [float(r["imbalance_mean"]) for r in rs]),
            ("hottest node, p99 CPU load (%)", [100 * float(r["hottest_p99"]) for r in rs]),
            ("migrations started", [int(r["migrations"]) for r in rs]),
            ("ping-pong moves", [int(r["ping_pong"]) for r in rs]),
        ]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
        for ax, (title, vals) in zip(axes, panels):
            ax.barh(range(len(names)), vals, color=cols)
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels(names if ax is axes[0] else [""] * len(names), fontsize=8)
            ax.invert_yaxis()
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelsize=8)
        first = rs[0]
        fig.suptitle(f"{first['nodes']} nodes / {first['vms']} VMs, {workload}, {float(first['hours']):g} h", fontsize=10)
        fig.tight_layout()
        fig.savefig(folder / f"compare-{pool}-{workload}.svg", metadata={"Date": None})
        plt.close(fig)

    series = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for r in csv.DictReader(open(folder / "compare-series.csv")):
        t, h = series[(r["pool"], r["workload"])][r["policy"]]
        t.append(int(r["t"]) / 3600)
        h.append(100 * float(r["hottest"]))
    for (pool, workload), per in series.items():
        fig, ax = plt.subplots(figsize=(9, 3.6))
        for policy, (t, h) in per.items():
            if policy in ("kubedrs-t1", "kubedrs-t2", "kubedrs-t4", "kubedrs-t5"):
                continue  # keep the plot readable: t3 (the default) stands for kubedrs
            ax.plot(t, h, label=policy, color=color(policy), linewidth=1)
        ax.axhline(100, color="#cf222e", linewidth=0.8, linestyle="--")
        ax.set_xlabel("hours")
        ax.set_ylabel("hottest node CPU demand / capacity (%)")
        ax.set_title(f"{pool} pool, {workload}: hottest node over time", fontsize=10)
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        fig.savefig(folder / f"series-{pool}-{workload}.svg", metadata={"Date": None})
        plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks")
