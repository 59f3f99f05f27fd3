# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PY ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test venv

$(BIN)/python:
	$(PY) -m venv $(VENV)

venv: $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt

# The demo on the embedded SQLite store, fixtures loaded, at http://127.0.0.1:8080: the webhook (/webhook,
# /flexible/<tag>), the browser simulator (/simulator) and the operators' console (/console, signed in as a
# development supervisor: production refuses it), with the outbox relay beside it (the console backend prints each
# code and notice on stderr). Ctrl-C stops both.
demo: venv
	$(BIN)/flask --app main store upgrade
	$(BIN)/flask --app main store load-fixtures
	CONSOLE_AUTH=development $(BIN)/flask --app main outbox relay & relay=$$!; \
	trap 'kill $$relay 2>/dev/null; wait $$relay' EXIT INT TERM; \
	CONSOLE_AUTH=development $(BIN)/flask --app main run --port 8080

# The whole default test suite (PostgreSQL store tests too when TEST_DATABASE_URL is set)
test: venv
	$(BIN)/python -m pytest
