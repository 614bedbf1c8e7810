PYTHON ?= python3
BACKENDS := tensorflow jax torch
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: demo test lint install-demo install-test

demo: install-demo
	$(PYTHON) examples/first_token_recall.py --output-dir demo_output

install-demo:
	$(PYTHON) -m pip install -q -e ".[tensorflow,demo]"

install-test:
	$(PYTHON) -m pip install -q -e ".[tensorflow,jax,torch,test,demo]"

lint:
	$(PYTHON) -m ruff check keras_rmt tests examples benchmarks
	$(PYTHON) -m ruff format --check keras_rmt tests examples benchmarks

# One process per backend; the wheel check is backend-free and runs once.
test: install-test lint
	$(PYTEST) tests/packaging
	@for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PYTEST) tests --ignore=tests/packaging \
			|| exit 1; \
	done
