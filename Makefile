# `make run` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data test-packages run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

# The test tools, and the optional extras the tests exercise (Ray, the server's driver).
$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Fashion-MNIST: Debian's package where apt works and we are root, else a checked download.
data: setup
	@if [ ! -d $(FASHION_DIR) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing dataset-fashion-mnist with apt-get"; \
		apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null \
			|| echo "apt-get could not install dataset-fashion-mnist; hypotune will download it"; \
	fi
	$(BIN)/hypotune data

STUDY := fashion_mnist_synergy
PRESET := quick
BUDGET := 8m

# The built-in study at its quick preset, then its report (written even if a trial failed).
# Seeds are added while verdicts are open, for at most BUDGET; rerunning goes on from there.
run: data
	$(BIN)/hypotune study run $(STUDY) --preset $(PRESET) --budget $(BUDGET); status=$$?; \
		$(BIN)/hypotune report $(STUDY) --preset $(PRESET) && exit $$status

# What some tests need from Debian, where apt works and we are root: headless Chromium for
# the report's browser test, PostgreSQL for the tracking-server test, iproute2 for Ray's.
TEST_PACKAGES := chromium chromium-driver postgresql iproute2
test-packages:
	@missing=""; for package in $(TEST_PACKAGES); do \
		dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq >/dev/null && apt-get install -y -qq $$missing >/dev/null \
			|| echo "apt-get could not install$$missing; the tests that need them will be skipped"; \
	fi

test: $(TEST_STAMP) test-packages
	-@$(MAKE) --no-print-directory data || echo "no Fashion-MNIST: the real-data smoke tests will be skipped"
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check src tests bench examples

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

bench: data
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/tracking_overhead.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/study_throughput.py
	$(BIN)/python bench/kernels.py

clean:
	rm -rf $(VENV) runs report build src/*.egg-info
