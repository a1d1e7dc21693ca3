#!/usr/bin/env bash
# Lenet-300-100 on Fashion-MNIST under the three retraining modes (docs/results.md, "Retraining modes"):
# each mode a cohort of 2 seeds, one thread each, side by side; then t = 1000 for the two modes that take it.
set -euo pipefail
out=results/retrain-fmnist
common=(--dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist --seeds 2 --rounds 7 --iterations 2000 --milestones 1000,1500 --threads 1)
for mode in weight-rewind lr-rewind fine-tune; do
  python -m lth_ray.cli trajectory "${common[@]}" --retrain $mode --rounds-dir $out/rounds/$mode > $out/$mode.jsonl &
done
wait
for mode in lr-rewind fine-tune; do
  python -m lth_ray.cli trajectory "${common[@]}" --retrain $mode --retrain-iterations 1000 \
    --rounds-dir $out/rounds/$mode-t1000 > $out/$mode-t1000.jsonl &
done
wait
python results/retrain-fmnist/export.py $out/rounds $out/export   # then: lth-ray report $out/export
