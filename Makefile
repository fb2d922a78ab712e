# `make run` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
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

run: data
	$(BIN)/hypotune train --preset course

test: setup
	-@$(MAKE) --no-print-directory data || echo "no Fashion-MNIST: the real-data smoke tests will be skipped"
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check src tests bench

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: data
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) runs report build src/*.egg-info
