# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves
# (demo installs the suite, test also its test tools), again whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
DATA_DIR ?= var
PORT ?= 8000

.PHONY: demo up test lint e2e clean translations

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "emsupply needs Python 3.11+: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(RUN_STAMP)

# Seeds DATA_DIR when it holds no warehouses, makes one demo token per role (printed once,
# kept in DATA_DIR/tokens.json), then runs the suite on PORT, PORT+1, PORT+2 until Ctrl-C.
demo: $(RUN_STAMP)
	$(BIN)/emsupply demo --data-dir $(DATA_DIR) --port $(PORT)

up: $(RUN_STAMP)
	$(BIN)/emsupply up --data-dir $(DATA_DIR) --port $(PORT)

test: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

e2e: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 -q -m e2e

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .hypothesis

# After changing a message marked with `_`: the template from the code, the Chinese catalogue
# updated from it (then translate what is new in shared/translations/zh/LC_MESSAGES/messages.po),
# and compiled. tests/unit/test_i18n.py fails while a message lacks its Chinese or the .mo is old.
translations: $(RUN_STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _ --no-default-keywords --no-location --sort-output \
	  --project emsupply -o shared/translations/messages.pot \
	  shared inventory_svc allocation_svc gateway emsupply
	$(BIN)/pybabel update -i shared/translations/messages.pot -d shared/translations -l zh \
	  --no-fuzzy-matching
	$(BIN)/pybabel compile -d shared/translations -l zh --statistics

# The reliability campaign of issue 13 (docs/reliability.md), not part of `make test`: a
# private PostgreSQL cluster, schemathesis --checks all with every role (>= 10,000 cases),
# PostgreSQL stopped 20 s under load, the slow-body, replay and token-guessing attacks.
.PHONY: campaign
campaign: $(TEST_STAMP)
	$(BIN)/python bench/campaign.py $(CAMPAIGN_ARGS)

# Speed where users wait (issue 12; docs/benchmarks.md): the suite under gunicorn on PostgreSQL
# (127.0.0.1:5432; it creates and drops the emsupply_speed_* databases) and Redis
# (127.0.0.1:6379, db 14, flushed), measured through the gateway, aims beside the figures.
# BENCH_ARGS e.g. "--only plan,hot --seconds 5", or "--profile DIR" (needs py-spy in .venv).
.PHONY: bench
bench: $(RUN_STAMP)
	$(BIN)/python bench/bench_speed.py $(BENCH_ARGS)

# The same at national scale (500,000 depots written by COPY, kept as ~1.9 GB of templates; the
# first run generates them in about 5 minutes): a plan through HTTP, memory, the snapshot.
# NATIONAL_ARGS e.g. "--depots 100000 --plans 10".
.PHONY: bench-national
bench-national: $(RUN_STAMP)
	$(BIN)/python bench/bench_national.py --read-timeout 120 $(NATIONAL_ARGS)
