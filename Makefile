# edgeconv — two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EDGECONV := $(VENV)/bin/edgeconv
STAMP := $(VENV)/.installed
# tensorrt only where an NVIDIA GPU can use it (its wheel pulls GBs of CUDA libraries)
EXTRAS := all,test$(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo ,tensorrt)
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint bench peers matrix docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$(EXTRAS)]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt onnx2torch  # edgeconv[coreml-onnx], without torchvision
	touch $(STAMP)

demo: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(EDGECONV) convert examples/digits_cnn.pt2 --input-shape image=1x1x8x8 \
		$(shell cat examples/demo-targets.txt | sed 's/^/--target /') \
		--calib examples/digits_calib --eval examples/digits_eval -o out/demo --force

test: setup lint
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check edgeconv
	$(PY) -m mypy edgeconv  # settings: [tool.mypy] in pyproject.toml

test-fast: setup
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

bench: setup
	for b in bench/bench_*.py; do TF_CPP_MIN_LOG_LEVEL=3 $(PY) $$b || exit 1; done

# The peer quantizers bench/bench_quant_peers.py compares against (not needed by edgeconv or its tests): Qualcomm's
# AIMET. Its own dependencies except onnx2torch's torchvision, which has no CPU build here (onnx2torch is in setup).
peers: setup
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt aimet-onnx
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt bokeh hvplot osqp pybind11 jsonschema

# Route matrix: every corpus model (tests/corpus) x every target its source reaches -> docs/coverage.md (resumable;
# results in bench/results/matrix.json). Hours for all of it: narrow with MATRIX_ARGS="--targets onnx,tflite-int8 --models resnet"
MATRIX_ARGS ?=
matrix: setup
	TF_CPP_MIN_LOG_LEVEL=3 HF_HUB_OFFLINE=1 nice -n 10 $(PY) bench/matrix.py $(MATRIX_ARGS)

docs: setup
	$(PY) -m edgeconv.cli.docgen > docs/cli.md
	$(PY) -m edgeconv.cli.docgen --update-exit-codes docs/exit-codes.md

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache
