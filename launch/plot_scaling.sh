#!/usr/bin/env bash
# Draws a `tpserve bench --csv` file as two panels in one PNG (gnuplot, Debian gnuplot-nox):
#   left:  decode tokens/s vs batch, one curve per (TP, context)  -- log2 batch axis
#   right: decode step ms vs TP, one curve per (batch, context)
# Skipped rows (skipped = 1) are left out. Each TP point is one rank's shard with no communication
# (what `tpserve bench` measures); `tpserve scale` adds the collectives.
#
#   bash launch/plot_scaling.sh bench.csv scaling.png
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 BENCH.csv OUT.png" >&2
  exit 2
fi
csv=$1
png=$2
command -v gnuplot >/dev/null || { echo "plot_scaling: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 3; }
[[ -r $csv ]] || { echo "plot_scaling: cannot read $csv" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One data file per series, columns: x y. Column positions come from the header by name.
awk -F, -v dir="$work" '
  NR == 1 { for (i = 1; i <= NF; ++i) col[$i] = i
            if (!("tp" in col) || !("batch" in col) || !("context" in col) || !("step_ms" in col) ||
                !("tokens_per_s" in col)) { print "plot_scaling: not a tpserve bench CSV" > "/dev/stderr"; exit 2 }
            next }
  ("skipped" in col) && $col["skipped"] == 1 { next }
  { tp = $col["tp"]; b = $col["batch"]; c = $col["context"]
    model = $col["model"]; device = $col["device"]; dtype = $col["dtype"]
    f = sprintf("%s/batch_tp%05d_c%07d.dat", dir, tp, c)
    print b, $col["tokens_per_s"] >> f
    g = sprintf("%s/tp_b%05d_c%07d.dat", dir, b, c)
    print tp, $col["step_ms"] >> g
    rows++ }
  END { if (rows == 0) { print "plot_scaling: no measured rows" > "/dev/stderr"; exit 2 }
        printf "%s (%s %s)\n", model, device, dtype > (dir "/title") }' "$csv"

# Sort every series by x; build the plot clauses.
left=()
right=()
for f in "$work"/batch_tp*.dat; do
  sort -n -k1,1 "$f" -o "$f"
  name=$(basename "$f" .dat)
  tp=$((10#$(sed -E 's/batch_tp([0-9]+)_c([0-9]+)/\1/' <<<"$name")))
  c=$((10#$(sed -E 's/batch_tp([0-9]+)_c([0-9]+)/\2/' <<<"$name")))
  left+=("'$f' using 1:2 with linespoints lw 2 title 'TP=$tp C=$c'")
done
for f in "$work"/tp_b*.dat; do
  sort -n -k1,1 "$f" -o "$f"
  name=$(basename "$f" .dat)
  b=$((10#$(sed -E 's/tp_b([0-9]+)_c([0-9]+)/\1/' <<<"$name")))
  c=$((10#$(sed -E 's/tp_b([0-9]+)_c([0-9]+)/\2/' <<<"$name")))
  right+=("'$f' using 1:2 with linespoints lw 2 title 'B=$b C=$c'")
done
join() { local IFS=,; echo "$*"; }
title=$(cat "$work/title")

gnuplot <<GNUPLOT
set terminal pngcairo size 1400,560 noenhanced font ",10"
set output '$png'
set multiplot layout 1,2 title "$title: one rank's shard per TP (no communication)"
set grid
set key left top
set logscale x 2
set xlabel 'batch (sequences per step)'
set ylabel 'decode tokens/s (one shard)'
plot $(join "${left[@]}")
set key right top
set logscale x 2
set xlabel 'TP size N'
set ylabel 'decode step ms (one shard)'
plot $(join "${right[@]}")
unset multiplot
GNUPLOT
[[ -s $png ]] || { echo "plot_scaling: gnuplot wrote nothing to $png" >&2; exit 1; }
echo "plot_scaling: wrote $png"
