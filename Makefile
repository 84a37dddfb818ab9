# Two entry points (see README): `make run` trains the default suite and writes the report;
# `make test` runs the test suite; its browser test drives Debian's chromium, which `make browser` installs
# with apt when it is missing, and its tests of algo.kwargs.compile need a C++ compiler, which `make compiler`
# installs the same way (as root; otherwise each says in one line what to run). Both create the virtualenv
# .venv on first use.
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

.PHONY: install run test browser compiler full lab clean-venv

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

test: install browser compiler
	$(PY) -m pytest -q

# Debian's chromium for the browser test (apt, never a browser download); a fresh Debian machine as root
# gets it here, anyone else gets the command to run
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "make: installing Debian's chromium for the browser test (apt-get install chromium)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else \
	        echo "make: the browser test needs Debian's chromium at $(CHROMIUM): run 'sudo apt-get install chromium', then make test again" >&2; \
	        exit 2; \
	    fi; \
	fi

# g++ for torch.compile (algo.kwargs.compile builds its CPU kernels with it), from apt like chromium
compiler:
	@if ! command -v g++ >/dev/null 2>&1 && [ -z "$${CXX:-}" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "make: installing Debian's g++ for torch.compile's tests (apt-get install g++)"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null; \
	    else \
	        echo "make: the tests of algo.kwargs.compile need a C++ compiler: run 'sudo apt-get install g++', then make test again" >&2; \
	        exit 2; \
	    fi; \
	fi

clean-venv:
	rm -rf $(VENV)
