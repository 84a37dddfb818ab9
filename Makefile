# Two entry points (see README): `make run` trains the default suite and writes the report;
# `make test` runs the test suite (its browser test needs Debian's chromium: apt-get install chromium,
# as .ci/run does). Both create the virtualenv .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
RLKIT   = $(VENV)/bin/rlkit
JOBS   ?= 2
SEEDS  ?= 0-2
# optional environment groups from pyproject.toml, e.g. make install EXTRAS=mujoco,box2d (dev has atari, minigrid, minatar)
EXTRAS ?=
SUITE  ?= params/cartpole.yaml params/acrobot.yaml params/pendulum.yaml params/mountaincar.yaml params/mountaincar_rnd.yaml \
          params/sparse_mountaincar.yaml params/sparse_mountaincar_rnd.yaml

.PHONY: install run test full lab clean-venv

install: $(VENV)/.installed
	@if [ -n "$(EXTRAS)" ]; then $(PY) -m pip install -q -e ".[$(EXTRAS)]"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name rlkit --display-name "Python (rlkit)" >/dev/null
	touch $@

run: install
	$(RLKIT) run $(SUITE) --seeds $(SEEDS) --jobs $(JOBS)
	$(RLKIT) report results

# the full suite: 5 seeds, 500k policy steps per run, its own results directory
full: install
	$(RLKIT) run $(SUITE) --seeds 0-4 --jobs $(JOBS) --results results/full --set total_steps=500000
	$(RLKIT) report results/full

# the notebooks find params/ and results/ through the repository, wherever Lab starts their kernels
lab: install
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: install
	$(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
