# The two commands a fresh machine needs (both set everything up first):
#   make serve   start the HTTP service on the default model (http://127.0.0.1:8000)
#   make test    run the whole test suite
PY := .venv/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SERVE_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup serve test lint bench-cpu

setup:
	@bash scripts/setup.sh

serve: setup
	$(PY) -m regexlm.cli serve --host $(HOST) --port $(PORT) $(SERVE_ARGS)

# lint first: a tree that is not formatted or not clean fails the tests
# then the decoding tests again with every index built on demand (no compile-time exploration)
LAZY_TESTS := tests/generation/test_rules.py tests/generation/test_batch.py \
	tests/generation/test_sentencepiece.py tests/generation/test_logits_processor.py \
	tests/generation/test_row_failures.py tests/index/test_token_index.py
test: setup lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)
	HF_HUB_OFFLINE=1 REGEXLM_INDEX=lazy $(PY) -m pytest -n 2 --dist loadfile -q $(LAZY_TESTS)

LINTED := regexlm tests bench setup.py
lint: setup
	$(PY) -m ruff format --check $(LINTED)
	$(PY) -m ruff check $(LINTED)
