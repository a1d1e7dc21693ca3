#!/usr/bin/env bash
# What a ticket is made of, Lenet-300-100 on Fashion-MNIST (docs/anatomy.md): every mask criterion of Zhou et al.
# 2019 at the same density ladder, the init variants and frozen pruned weights beside the large_final ticket, the
# supermask accuracy of every round, and the barrier between successive rounds (Paul et al. 2023).
# 2 seeds, 8 rounds at 30% of the hidden layers' weights per round (the output at 15%), 1,000 Adam iterations a
# round at the thesis' rate; two processes of one thread side by side (about 15 minutes on 2 cores).
set -euo pipefail
out=results/anatomy-fmnist
py=${PYTHON:-.venv/bin/python}
common="--dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist --seeds 2 --rounds 8 --iterations 1000
  --eval-every 100 --prune-rate-fc 0.3 --threads 1"
run() {  # name, then options
  local name=$1; shift
  # shellcheck disable=SC2086
  $py -m lth_ray.cli trajectory $common "$@" --rounds-dir $out/rounds/$name > $out/$name.jsonl
}
export -f run; export out py common
# the large_final ticket with the init variants, its re-init and random pruning, and the successive barrier
run variants --baselines signed-constant,reshuffle,signed-reshuffle,signed-reinit,reinit,random-prune \
  --successive --instability-points 11 &
run frozen --pruned-weights frozen-init &
wait
for c in small_final large_init small_init large_init_large_final small_init_small_final magnitude_increase movement \
  random large_final_same_sign large_final_diff_sign magnitude_increase_same_sign magnitude_increase_diff_sign; do
  echo $c
done | xargs -P 2 -I{} bash -c 'run criterion-{} --criterion {}'
$py results/anatomy-fmnist/export.py $out/rounds $out/export   # then: lth-ray report $out/export
