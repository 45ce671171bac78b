# All set-up lives here: `make demo` (the main job) and `make test` (the tests) create the
# virtual environment and install what they need on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint bench clean

# The local cloud's instances are OpenSSH servers: install the Debian package where missing.
# (python3 is the system interpreter the unprivileged-user test runs under.)
SSHD := /usr/sbin/sshd
$(SSHD):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server python3; \
	else \
		echo "precip-repro's local cloud needs OpenSSH's server: sudo apt-get install openssh-server" >&2; \
		exit 1; \
	fi

# Signed runs are checked against OpenSSH's own ssh-keygen, with keys in a real ssh-agent
# (the client package; the server depends on it, but a machine may have one without the other).
SSH_AGENT := /usr/bin/ssh-agent
$(SSH_AGENT):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; \
	else \
		echo "precip-repro's tests need OpenSSH's client tools: sudo apt-get install openssh-client" >&2; \
		exit 1; \
	fi

# The tests' stock cloud images give their default user sudo, as cloud-init does.
SUDO := /usr/bin/sudo
$(SUDO):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo; \
	else \
		echo "precip-repro's tests need sudo (the Debian package sudo), installed as root" >&2; \
		exit 1; \
	fi

# The HTML report is checked as a browser reads it: Debian's Chromium, headless.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "precip-repro's tests need Chromium (the Debian package chromium), installed as root" >&2; \
		exit 1; \
	fi

# Packages are checked with roc-validator, the RO-Crate community's validator, as a reviewer
# runs it: a command in a virtual environment of its own (it pins rich below 14, which
# import-linter cannot use). The tests run it offline, in a network namespace of their own.
ROCV := .venv-rocv/bin/rocrate-validator
$(ROCV):
	test -x .venv-rocv/bin/python || $(PYTHON) -m venv .venv-rocv
	.venv-rocv/bin/python -m pip install --quiet --disable-pip-version-check 'roc-validator==0.13.*'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP) $(SSHD)
	$(BIN)/precip-repro demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint $(SSHD) $(SUDO) $(SSH_AGENT) $(CHROMIUM) $(ROCV)
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(SSHD)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/journal.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/sftp.py
	$(BIN)/python bench/diff.py
	$(BIN)/python bench/provision.py
	$(BIN)/python bench/sudo.py
	$(BIN)/python bench/sign.py
	$(BIN)/python bench/export.py

clean:
	rm -rf $(VENV) .venv-rocv .mypy_cache .ruff_cache .pytest_cache .hypothesis
