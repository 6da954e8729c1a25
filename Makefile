# Set-up is part of every target: a fresh clone needs only Python 3.11 and these commands.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dekasim-installed
DOCS_STAMP := $(VENV)/.dekasim-docs-installed
OUT    ?= runs/default
# A tutorial that runs longer than this fails `make docs` (the target is under 60 s on CI's two cores)
TUTORIAL_LIMIT_S ?= 120

.PHONY: run test test-fast docs bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build here
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $(STAMP)

# the docs tools too (mkdocs, jupyter kernel, taplo): `make docs` needs them, and the tests check the docs'
# generators and the JSON Schema with them
$(DOCS_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,ray,docs]'
	touch $(STAMP) $(DOCS_STAMP)

run: $(STAMP)
	$(VENV)/bin/dekasim run scenarios/default.toml --out $(OUT) --threads 1

test: $(DOCS_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q tests

test-fast: $(DOCS_STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "not slow" tests

# the site -> site/: scenarios against the JSON Schema (taplo), the tutorials executed, mkdocs with warnings as
# errors and the link check (docs/gen/hooks.py)
docs: $(DOCS_STAMP)
	$(VENV)/bin/taplo check
	$(PY) docs/gen/tutorials.py --limit-s $(TUTORIAL_LIMIT_S)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

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
	rm -rf $(VENV) runs site build/docs-tutorials
