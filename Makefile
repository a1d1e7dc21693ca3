# The two entry points of the README: `make demo` and `make test`. Both set up first (idempotent).
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE ?= token

.PHONY: setup data test test-fast lint typecheck check demo bench clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(VPY) -m pip install -q -e '.[test,dev,docs]'
	touch $(STAMP)

# Debian's Fashion-MNIST (real data, offline); skipped quietly where apt or root is missing.
data:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	  || echo "note: could not install dataset-fashion-mnist; the demo downloads it, the e2e tests on it are skipped"; fi

# Every test, the Ray tier included (what CI runs); the 20 slowest are listed at the end.
test: setup
	$(VPY) -m pytest -q --durations=20

# The edit loop: CPU only, no Ray, no end-to-end runs (a test that starts Ray anyway fails), one pytest worker
# per core. One torch thread each: the tiny nets gain nothing from more, and competing OpenMP threads on a busy
# machine slow the tier down many times.
test-fast: setup
	CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1 $(VPY) -m pytest -q -n auto -m "not ray and not e2e" --durations=10

# What CI runs before the tests: the linter, the formatter's check, the type checker (the whole package) and
# the docs build (`docs`, below).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy lth_ray

check: lint typecheck docs

# The docs site (mkdocs.yml): built into site/ with every warning an error (it works offline); served with
# live reload on http://127.0.0.1:8000.
.PHONY: docs docs-serve
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

DEMO := demo-$(shell date +%Y%m%d-%H%M%S)
# Without Debian's package (no root, not Debian) the demo lets torchvision download Fashion-MNIST: once, into
# $LTH_RAY_DATA or ~/.cache/lth_ray/datasets, where later runs find it. (Expanded when the recipe runs, after
# `data`; should the package appear meanwhile, --download still finds it first and fetches nothing.)
DEMO_DATA = $(if $(wildcard $(FMNIST)),,--download)

# A small real sweep on Fashion-MNIST (embedded local Ray), then the report with the paper's figures.
demo: setup
	$(VPY) -m sweeps.lenet_mnist --dataset fashion-mnist $(DEMO_DATA) --seeds 2 --rounds 2 --iterations 1000 \
	  --eval-every 100 --baselines reinit --num-gpus 0 --name $(DEMO) --storage $(CURDIR)/results
	$(VPY) -m lth_ray.cli report $(CURDIR)/results/$(DEMO)
	@echo "demo results: $(CURDIR)/results/$(DEMO) (export/ holds Parquet + thesis files, report/ the figures)"

bench: setup
	$(VPY) benchmarks/bench_train_step.py
	$(VPY) benchmarks/bench_ray_overhead.py
	$(VPY) benchmarks/bench_export.py
	$(VPY) benchmarks/bench_cohort.py --arch lenet --members 8

clean:
	rm -rf $(VENV)
