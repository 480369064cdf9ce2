# Two commands do all set-up: `make demo` and `make test` (see README.md).
# Both install the exact, hash-checked versions of requirements/*.lock; `make lock` refreshes them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

RUNTIME_LOCK := requirements/runtime.lock
DEV_LOCK := requirements/dev.lock
BUILD_IN := requirements/build.in
TOOLS_IN := requirements/tools.in
TOOLS_LOCK := requirements/tools.lock
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
LATEST := .venv-latest

# The flags of every lock, here and nowhere else: exact versions with the hash of every file PyPI
# has for them, resolved once for every OS, CPU and Python >= 3.11.
LOCK_FLAGS := --quiet --universal --python-version 3.11 --generate-hashes --custom-compile-command 'make lock'

.PHONY: demo test lint typecheck unit bench clean lock lock-upgrade test-latest

# Package names of a lock or of `pip freeze` output, normalised (PEP 503), one per line, sorted.
NAMES := sed -n -e 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\).*/\1/p' | tr 'A-Z_.' 'a-z--' | sort -u

# $(call install,LOCK): make .venv hold LOCK's packages, hash-checked, and nothing that no lock
# names (left over from an older lock); then this project, editable, built with the locked
# setuptools, so nothing unlocked is downloaded.
define install
	$(BIN)/pip install --quiet --require-hashes -r $(1)
	$(BIN)/pip freeze --exclude-editable | $(NAMES) > $(VENV)/.have
	cat $(RUNTIME_LOCK) $(DEV_LOCK) | $(NAMES) > $(VENV)/.want
	stale="$$(comm -23 $(VENV)/.have $(VENV)/.want)"; \
	if [ -n "$$stale" ]; then $(BIN)/pip uninstall --quiet --yes $$stale; fi
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@out="$$($(BIN)/pip check)" || { echo "$$out"; \
	  echo 'The locks do not fit pyproject.toml: run `make lock` (see README.md, Development).'; exit 1; }
endef

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml $(RUNTIME_LOCK) | $(BIN)/python
	$(call install,$(RUNTIME_LOCK))
	touch $@

$(STAMP): pyproject.toml $(DEV_LOCK) | $(BIN)/python
	$(call install,$(DEV_LOCK))
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m mparticle_klaviyo.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/map_throughput.py

# uv, at the version of requirements/tools.lock, in a venv of its own.
$(TOOLS)/.installed: $(TOOLS_LOCK)
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --require-hashes -r $(TOOLS_LOCK)
	touch $@

# $(call compile,LOCK,INPUTS): compile INPUTS into LOCK (uv keeps LOCK's versions where they still
# fit); a lock whose text did not change keeps its date, so no venv is reinstalled for nothing.
define compile
	@echo "uv pip compile $(LOCK_FLAGS) $(LOCK_UPGRADE) $(2) -o $(1)"
	@if [ -f $(1) ]; then cp -p $(1) $(1).old; fi; \
	$(UV) pip compile $(LOCK_FLAGS) $(LOCK_UPGRADE) $(2) -o $(1) || { rm -f $(1).old; exit 1; }; \
	if cmp -s $(1) $(1).old; then mv $(1).old $(1); else rm -f $(1).old; fi
endef

# Recompiles the locks from pyproject.toml after a dependency changed there, keeping every locked
# version that still fits; `make lock-upgrade` moves everything to the newest allowed release.
# The runtime lock is constrained by the dev lock, so both install the same versions.
lock: $(TOOLS)/.installed
	{ echo '# [build-system] requires of pyproject.toml, written by `make lock`: edit pyproject.toml.'; \
	  $(TOOLS)/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'; \
	} > $(BUILD_IN)
	$(call compile,$(DEV_LOCK),pyproject.toml $(BUILD_IN) --extra dev)
	$(call compile,$(RUNTIME_LOCK),pyproject.toml $(BUILD_IN) -c $(DEV_LOCK))
	$(call compile,$(TOOLS_LOCK),$(TOOLS_IN))

lock-upgrade:
	$(MAKE) lock LOCK_UPGRADE=--upgrade

# Not part of `make test` or CI: the same checks in a throwaway venv with the newest releases that
# pyproject.toml's ranges allow, no lock, to learn early what the next `make lock-upgrade` brings.
test-latest: $(TOOLS)/.installed
	rm -rf $(LATEST)
	$(UV) venv --quiet --python $(PYTHON) $(LATEST)
	$(UV) pip install --quiet --python $(LATEST)/bin/python --upgrade -e '.[dev]'
	@awk_norm='/^[A-Za-z0-9]/ { n = tolower($$1); gsub(/[_.]+/, "-", n); v = $$2; sub(/[ ;\\].*/, "", v); print n "==" v }'; \
	awk -F'==' "$$awk_norm" $(DEV_LOCK) | sort -u > $(LATEST)/.locked; \
	$(UV) pip freeze --quiet --python $(LATEST)/bin/python --exclude-editable | awk -F'==' "$$awk_norm" | sort -u > $(LATEST)/.latest; \
	echo "Installed versions that $(DEV_LOCK) does not have:"; \
	comm -13 $(LATEST)/.locked $(LATEST)/.latest | sed 's/^/  /' | grep . || echo '  (none)'
	@status=0; \
	$(LATEST)/bin/ruff check src tests bench || status=1; \
	$(LATEST)/bin/ruff format --check src tests bench || status=1; \
	$(LATEST)/bin/mypy --cache-dir $(LATEST)/.mypy_cache || status=1; \
	$(LATEST)/bin/pytest -p no:cacheprovider || status=1; \
	if [ $$status -ne 0 ]; then echo 'test-latest: some checks failed with the newest releases (see above)'; fi; \
	exit $$status

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
