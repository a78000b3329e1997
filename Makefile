# `make demo`: set up .venv and grade the sample class on the embedded data.
# `make test`: set up .venv and run the whole test suite (what CI runs).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# nbgrader's own commands (nbgrader db upgrade, its apps in the tests) run the `alembic` executable:
# keep the venv's bin/ on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup sandbox browser demo test test-reference build check validate bench clean messages

setup: sandbox $(VENV)/.installed

# grading runs every notebook in a bubblewrap sandbox: install it where we can (root, apt)
sandbox:
	@command -v bwrap >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null; \
	else echo "note: install bubblewrap (sudo apt-get install bubblewrap): course grade needs it" >&2; fi; }

# the tests render the HTML reports in headless Chromium (tests/test_pages.py; skipped without it)
browser:
	@command -v chromium >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	  || echo "note: could not install chromium: the page-rendering tests will be skipped" >&2; \
	else echo "note: install chromium (sudo apt-get install chromium) to run the page-rendering tests" >&2; fi; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

demo: setup
	$(BIN)/course build
	$(BIN)/course grade examples/class --out build/demo

# (the suite checks that the committed notebooks are fresh: tests/test_build.py)
# two pytest workers, a test module each at a time (module fixtures such as test_grading's class
# are built once): the grading tests wait on subprocesses as much as they compute. OpenMP threads
# sleep, not spin, between torch's parallel regions (OMP_WAIT_POLICY, which reaches the sandboxed
# notebooks too): with two workers on two cores a spinning thread burns the other's core (measured:
# test_contract and five check modules 306 -> 247 s, 425 -> 291 user CPU-s)
test: setup browser
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n 2 --dist loadscope --durations=10

test-reference: setup
	$(BIN)/python -m pytest -q reference

build: setup
	$(BIN)/course build

check: setup
	$(BIN)/course build --check

validate: setup
	$(BIN)/course validate

# `make messages LAB=<lab> TO=ko` (LAB=course: what every lab shares): extract the English msgids
# with pybabel (babel.cfg) and create or update autograder/locale/<TO>/LC_MESSAGES/<LAB>.po; then
# translate it and run `course build` (which compiles it). See README "Languages".
messages: setup
	@test -n "$(LAB)" -a -n "$(TO)" || { echo "usage: make messages LAB=<lab>|course TO=<lang>" >&2; exit 2; }
	$(BIN)/python -m autograder.catalogs $(LAB) $(TO)

bench: setup
	$(BIN)/python benchmarks/grading.py --lab backprop --copies 20
	$(BIN)/python benchmarks/lenet.py

clean:
	rm -rf build graded
