# `make run` and `make test` do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: setup data browser run test lint bench clean

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

STUDY := studies/fashion_mnist_synergy.toml
PRESET := quick

# The built-in study at its quick preset, then its report (written even if a trial failed).
run: data
	$(BIN)/hypotune study run $(STUDY) --preset $(PRESET); status=$$?; \
		$(BIN)/hypotune report $(STUDY) --preset $(PRESET) && exit $$status

# Headless Chromium for the report's browser test, where apt works and we are root.
browser:
	@if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver with apt-get"; \
		apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null \
			|| echo "apt-get could not install chromium; the browser test will be skipped"; \
	fi

test: setup browser
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
