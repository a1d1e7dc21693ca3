#!/usr/bin/env bash
# Fashion-MNIST Lenet-300-100 tickets retrained on real handwritten digits in MNIST's format (docs/results.md,
# "Transfer"): the trunk sweep and the digits' own controls side by side, then two retrain branches of the trunk.
# Needs scikit-learn for the digits only (.venv/bin/pip install scikit-learn; not a dependency of lth_ray).
set -euo pipefail
out=results/transfer-digits
data=$PWD/$out/data
python results/transfer-digits/make_digits.py $data
recipe=(--rounds 4 --iterations 2000 --eval-every 200 --prune-rate-fc 0.5)
# the trunk: IMP on Fashion-MNIST, 2 seeds (2 CPU trials)
time python -m sweeps.lenet_mnist --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist \
  --seeds 2 "${recipe[@]}" --num-gpus 0 --storage $out --name fmnist-trunk > $out/trunk.log 2>&1 &
# the controls on the digits: their own ticket (IMP on the digits), its random re-init, random pruning
time python -m lth_ray.cli trajectory --dataset mnist --data-root $data --seeds 2 "${recipe[@]}" \
  --baselines reinit,random-prune --threads 1 > $out/digits-own.jsonl &
wait
# the transfer: each round's Fashion-MNIST ticket retrained on the digits; then with a fresh output layer; then
# fine-tuned from the trunk's trained weights with a fresh output layer
time python -m lth_ray.cli branch $out/fmnist-trunk retrain --set dataset=mnist --set data_root=$data --num-gpus 0
time python -m lth_ray.cli branch $out/fmnist-trunk retrain --set dataset=mnist --set data_root=$data --num-gpus 0 \
  --reinit-output
time python -m lth_ray.cli branch $out/fmnist-trunk retrain --set dataset=mnist --set data_root=$data --num-gpus 0 \
  --set retrain=fine-tune --reinit-output
python results/transfer-digits/table.py $out
