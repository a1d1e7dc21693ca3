#!/usr/bin/env bash
# ResNet-20 on Fashion-MNIST at reduced length: instability of the dense net and of a 20%-density ticket at
# k = 0, 500 and 2000, 2 seeds (README: Results). Three runs side by side, one thread each; JSON lines per round.
set -euo pipefail
cd "$(dirname "$0")/../.."
common=(--arch resnet20 --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist
        --iterations 2500 --eval-every 500 --batch-size 32 --learning-rate 0.025 --milestones none
        --rounds 1 --prune-rate-fc 0.8 --seeds 2 --instability --instability-points 3 --instability-bn recompute
        --threads 1)
run() { .venv/bin/python -m lth_ray.trajectory "${common[@]}" --rewind-iteration "$1" > "results/resnet20-fmnist/k$1.jsonl" 2> "results/resnet20-fmnist/k$1.log"; }
run 0 & run 500 & run 2000 &
wait
# The dense pair at k = 0 once more, each seed alone, for both BatchNorm modes in one record (the JSON line
# carries error_barrier, recomputed, and interpolated_error_barrier):
for s in 0 1; do
  .venv/bin/python -m lth_ray.trajectory --arch resnet20 --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \
    --iterations 2500 --eval-every 500 --batch-size 32 --learning-rate 0.025 --milestones none --rounds 0 --seed "$s" \
    --instability --instability-points 3 --instability-bn recompute --threads 1 > "results/resnet20-fmnist/dense-k0-seed$s.jsonl" &
done
wait
