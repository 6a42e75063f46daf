#!/usr/bin/env bash
# One command for the comparison in docs/benchmarks.md ("kubedrs against what KubeVirt users run today"):
#   bash benches/compare/run.sh            # everything: small, medium and large pools, all policies
#   bash benches/compare/run.sh --pools small --workloads spikes   # any `kubedrs compare` option narrows it
# Installs the Python side (ProxLB's solver, OR-Tools, matplotlib) into benches/compare/.venv with pip, builds
# kubedrs in release, runs `kubedrs compare`, draws the SVG plots and records the machine and versions.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-docs/benchmarks}
VENV=${VENV:-benches/compare/.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/compare/requirements.txt
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-target}/release/kubedrs"
mkdir -p "$OUT"
"$BIN" compare --out "$OUT" --python "$VENV/bin/python" "$@" | tee "$OUT/compare-stdout.md"
"$VENV/bin/python" benches/compare/plot.py "$OUT"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "machine: $(uname -srm), $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "rustc: $(rustc --version)"
  echo "kubedrs: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"
  echo "python: $("$VENV/bin/python" --version 2>&1)"
  "$VENV/bin/pip" freeze | grep -iE '^(proxlb|proxlb-solver|ortools|matplotlib)=='
} > "$OUT/machine.txt"
echo "wrote $OUT (compare.csv, compare-series.csv, compare.md, *.svg, machine.txt)"
