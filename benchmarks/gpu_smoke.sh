#!/usr/bin/env bash
# A quick CUDA check of the training path (76 s on an NVIDIA H200, 2026-11-27), for a short GPU lease where
# benchmarks/gpu_check.sh (the full set, 7.5+ minutes) does not fit: a tiny manifest of real faces, `p2d train`
# stopped by --max-steps, --resume, `p2d translate`, then torchrun with one rank (nccl: the process group's
# start and ddp.stop's barrier and end) stopped mid-epoch and resumed. Prints which steps failed.
#   bash benchmarks/gpu_smoke.sh            # from the repository root; DEV=cpu runs it here without torchrun
# The device image's python has torch, typer, rich, pandas, opencv, scikit-image but not imagehash (pure
# Python): copy it into a carried folder and name it in PYLIB (e.g. PYLIB=gpu_work/pylib).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYLIB:+:$PWD/$PYLIB}"; DEV=${DEV:-cuda}; failed=()
tmp=$(mktemp -d)
python3 - "$tmp" <<'PY'
import sys
from pathlib import Path
from benchmarks.fixtures import tests_module
make_manifest = tests_module("train_helpers").make_manifest
print(make_manifest(Path(sys.argv[1]) / "data"))
PY
t0=$(date +%s)
python3 -m p2d train $tmp/data/faces.csv --out $tmp/run --max-steps 4 --device $DEV || failed+=(train)
python3 -m p2d train $tmp/data/faces.csv --out $tmp/run --resume --device $DEV || failed+=(resume)
python3 -m p2d translate $tmp/run $tmp/data/photos --to drawing --out $tmp/drawn --device $DEV || failed+=(translate)
ls $tmp/drawn | head -3
if [ "$DEV" = cuda ]; then
  torchrun --standalone --nproc-per-node 1 -m p2d train $tmp/data/faces.csv --out $tmp/run1 --max-steps 4 || failed+=(torchrun)
  torchrun --standalone --nproc-per-node 1 -m p2d train $tmp/data/faces.csv --out $tmp/run1 --resume || failed+=(torchrun-resume)
fi
echo "elapsed $(( $(date +%s) - t0 )) s; failed: ${failed[*]:-none}"
