#!/usr/bin/env bash
# Every training run behind results/, in priority order, one at a time.
#
#   scripts/reproduce.sh [main|ablations|ablation-seeds|all] [--device cpu|gpu]
#
# Each run goes to $RUNS_DIR/<name> (default runs/). The script is safe to
# stop and start again: a finished run (report.json present) is skipped, a run
# with a checkpoint continues with --resume, a folder without a checkpoint
# (stopped before its first save) starts over. Data come from the usual
# IFM_MNIST_DIR / IFM_TEXTURES / IFM_CACHE_DIR variables (or the defaults
# described in README.md). After the runs: python aggregate.py, and the
# plotting and probe scripts, regenerate the tables and figures.
set -euo pipefail
cd "$(dirname "$0")/.."

group="${1:-all}"
shift || true
runs_dir="${RUNS_DIR:-runs}"

main_runs=(
  "baseline-seed0  --epochs 10 --seed 0"
  "ifm-seed0       --epochs 10 --seed 0 --ifm"
  "baseline-seed1  --epochs 10 --seed 1"
  "ifm-seed1       --epochs 10 --seed 1 --ifm"
  "baseline-seed2  --epochs 10 --seed 2"
  "ifm-seed2       --epochs 10 --seed 2 --ifm"
)
# One setting changed from the main IFM run (JSD, lambda 30, K 64, within-image
# marginals, nearest upsampling), seed 0, 4 epochs each.
ablation_runs=(
  "ifm-lam1-seed0            --epochs 4 --ifm --lam 1"
  "ifm-lam10-seed0           --epochs 4 --ifm --lam 10"
  "ifm-batchmarg-seed0       --epochs 4 --ifm --marginal batch"
  "ifm-dv-lam1-seed0         --epochs 4 --ifm --estimator dv --lam 1"
  "ifm-bilinear-seed0        --epochs 4 --ifm --upsample bilinear"
  "baseline-procedural-seed0 --epochs 4 --textures procedural"
  "ifm-procedural-seed0      --epochs 4 --ifm --textures procedural"
  "ifm-k16-seed0             --epochs 4 --ifm --samples 16"
  "ifm-lam0.1-seed0          --epochs 4 --ifm --lam 0.1"
  "ifm-lam100-seed0          --epochs 4 --ifm --lam 100"
  "ifm-postpool-seed0        --epochs 4 --ifm --pair-features post-pool"
  "ifm-adam-seed0            --epochs 4 --ifm --optimizer adam"
  "ifm-eq4-lam1-seed0        --epochs 1 --ifm --estimator paper-eq4 --lam 1"
)

# Seeds 1 and 2 of the ablations whose reading rests on a difference from the
# main run: batch-wide marginals, pairs after pooling, lambda 10.
ablation_seed_runs=(
  "ifm-batchmarg-seed1       --epochs 4 --seed 1 --ifm --marginal batch"
  "ifm-batchmarg-seed2       --epochs 4 --seed 2 --ifm --marginal batch"
  "ifm-postpool-seed1        --epochs 4 --seed 1 --ifm --pair-features post-pool"
  "ifm-postpool-seed2        --epochs 4 --seed 2 --ifm --pair-features post-pool"
  "ifm-lam10-seed1           --epochs 4 --seed 1 --ifm --lam 10"
  "ifm-lam10-seed2           --epochs 4 --seed 2 --ifm --lam 10"
)

case "$group" in
  main) selected=("${main_runs[@]}") ;;
  ablations) selected=("${ablation_runs[@]}") ;;
  ablation-seeds) selected=("${ablation_seed_runs[@]}") ;;
  all) selected=("${main_runs[@]}" "${ablation_runs[@]}" "${ablation_seed_runs[@]}") ;;
  *) echo "usage: scripts/reproduce.sh [main|ablations|ablation-seeds|all] [train.py flags...]" >&2
     exit 2 ;;
esac

for entry in "${selected[@]}"; do
  read -r name args <<<"$entry"
  out="$runs_dir/$name"
  if [ -f "$out/report.json" ]; then
    echo "== $name: done, skipped"
    continue
  fi
  if [ -f "$out/checkpoint.npz" ]; then
    echo "== $name: resuming"
    python3 train.py --out "$out" --resume --quiet "$@"
  else
    [ -d "$out" ] && rm -r "$out"
    echo "== $name: starting ($args)"
    # shellcheck disable=SC2086
    python3 train.py --out "$out" --quiet $args "$@"
  fi
done
