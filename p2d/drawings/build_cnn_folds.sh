#!/usr/bin/env bash
# The drawing CNN's five out-of-fold models and its full model, trained at once on a GPU host (what
# benchmarks/drawing_thresholds.py --cnn-folds and research/facing_oof.py read). On an NVIDIA H200 with
# 16 CPU cores, 17 such models of 100 epochs trained at once in 138-186 s each (2026-11-27): the crops
# are made on the CPU, one core a model (--threads 1).
#   python -m p2d.drawings.build_cnn --exclude ../shared/eval-exclude.sha256 --write-pack PACK.npz  # here
#   bash p2d/drawings/build_cnn_folds.sh PACK.npz OUT_DIR [build_cnn.py options]                  # there
# OUT_DIR gets fold0.npz .. fold4.npz, full.npz and a log of each. One seed's out-of-fold figures move by
# more than most changes do (research/README.md), so compare several: SEEDS="0 1 2" also trains the fold
# models of each seed into OUT_DIR/seed{s}/ (the full model stays seed 0's; 16 such models at once on
# 16 cores took 82-152 s each on an H200), and the benchmarks take those folders together (do not also pass --seed).
set -uo pipefail
cd "$(dirname "$0")/../.."  # the checkout's root: p2d is imported from it
pack=$1 out=$2; shift 2
mkdir -p "$out"
export PYTHONPATH="$PWD" OMP_NUM_THREADS=1
train() { python3 -m p2d.drawings.build_cnn --pack "$pack" --device "${DEVICE:-cuda}" --threads 1 "$@"; }
for k in 0 1 2 3 4; do train --folds 5 --fold $k -o "$out/fold$k.npz" "$@" > "$out/fold$k.log" 2>&1 & done
train -o "$out/full.npz" "$@" > "$out/full.log" 2>&1 &
for s in ${SEEDS:-}; do
  [ "$s" = 0 ] && continue  # seed 0 is the folder itself
  mkdir -p "$out/seed$s"
  for k in 0 1 2 3 4; do
    train --folds 5 --fold $k --seed "$s" -o "$out/seed$s/fold$k.npz" "$@" > "$out/seed$s/fold$k.log" 2>&1 &
  done
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=$((failed + 1)); done
tail -qn1 "$out"/*.log "$out"/seed*/*.log 2>/dev/null
exit $failed
