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

# One process per backend, the three side by side (they share the cores
# better than one after another); each writes test_logs/BACKEND.log, printed
# whole when it fails. The wheel check is backend-free and runs once.
test: install-test lint
	$(PYTEST) tests/packaging
	@mkdir -p test_logs; pids=""; \
	for backend in $(BACKENDS); do \
		KERAS_BACKEND=$$backend $(PYTEST) --durations=5 tests \
			--ignore=tests/packaging > test_logs/$$backend.log 2>&1 & \
		pids="$$pids $$backend:$$!"; \
	done; \
	status=0; for entry in $$pids; do \
		backend=$${entry%%:*}; echo "=== KERAS_BACKEND=$$backend ==="; \
		if wait $${entry##*:}; then tail -n 8 test_logs/$$backend.log; \
		else cat test_logs/$$backend.log; status=1; fi; \
	done; \
	exit $$status
