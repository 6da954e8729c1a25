# Set-up is part of every target: a fresh clone needs only Python 3.11 and these commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dekasim-installed
OUT    ?= runs/default

.PHONY: run test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build here
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/dekasim run scenarios/default.toml --out $(OUT) --threads 1

test: $(STAMP)
	$(PY) -m pytest -q tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

bench: $(STAMP)
	$(PY) benchmarks/deka_main_job.py
	$(PY) benchmarks/channel_throughput.py
	$(PY) benchmarks/time_domain_link.py
	$(PY) benchmarks/default_scenario_profile.py
	$(PY) benchmarks/ray_vs_local.py
	$(PY) benchmarks/jscc_cala.py
	$(PY) benchmarks/ldm_sampling.py
	$(PY) benchmarks/interval_coverage.py

clean:
	rm -rf $(VENV) runs
