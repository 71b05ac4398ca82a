# iotdr developer entry points. Every target installs what it needs first.
VENV := .venv
PY := $(VENV)/bin/python
SRC := agent testbed cli cloud simulator tests bench

.PHONY: setup demo test lint typecheck unit integration bench clean deb systemd-root package-test

setup:
	./scripts/install-deps

demo: setup
	$(VENV)/bin/iotdr demo

lint: setup
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)

# mypy cannot follow setuptools' editable finder, so it reads a folder view of
# the iotdr namespace made of links to the real folders.
typecheck: setup
	mkdir -p build/typecheck/iotdr
	for p in agent testbed cli cloud simulator; do ln -sfn $(CURDIR)/$$p build/typecheck/iotdr/$$p; done
	MYPYPATH=build/typecheck $(VENV)/bin/mypy -p iotdr.agent -p iotdr.testbed -p iotdr.cli -p iotdr.cloud -p iotdr.simulator -p tests
	MYPYPATH=build/typecheck $(VENV)/bin/mypy bench

unit: setup
	$(PY) -m pytest -m "not testbed" -q

integration: setup
	$(PY) -m pytest -m testbed -q

# Two workers, a test file each at a time (module fixtures stay on one
# worker); every testbed lives in its own network namespace.
test: lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadfile

# The Debian package: dist/iotdr-agent_VERSION_ARCH.deb (scripts/build-deb).
deb: setup
	./scripts/build-deb

# A minimal Debian with systemd for the package test, made once (debootstrap).
systemd-root:
	./scripts/systemd-root build/systemd-root

# The .deb under a real systemd (nspawn) against a testbed; also in `make test`.
package-test: setup
	$(PY) -m pytest -q tests/package

bench: setup
	$(PY) bench/failover.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
