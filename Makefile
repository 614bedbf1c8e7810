PYTHON ?= python3
BACKENDS := tensorflow jax torch
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: demo test lint install-demo install-test

demo: install-demo
	$(PYTHON) examples/first_token_recall.py --output-dir demo_output

install-demo:
	$(PYTHON) -m pip install -q -e ".[tensorflow,examples]"

install-test:
	$(PYTHON) -m pip install -q -e ".[tensorflow,jax,torch,test,examples]"

lint:
	$(PYTHON) -m ruff check keras_rmt tests examples benchmarks
	$(PYTHON) -m ruff format --check keras_rmt tests examples benchmarks

# Four processes side by side (they share the cores better than one after
# another): one per backend, and one under TensorFlow for the tests marked
# `backend_independent` (NumPy, tf.data and string work, the wheel check),
# which the per-backend runs deselect, so they run once. Each writes
# test_logs/RUN.log (RUN: a backend or backend_independent), printed whole
# when it fails.
RUNS := $(BACKENDS) backend_independent

test: install-test lint
	@mkdir -p test_logs; pids=""; \
	for run in $(RUNS); do \
		if [ $$run = backend_independent ]; then \
			backend=tensorflow; marks="backend_independent"; \
		else \
			backend=$$run; marks="not backend_independent"; \
		fi; \
		KERAS_BACKEND=$$backend $(PYTEST) --durations=30 -m "$$marks" \
			tests > test_logs/$$run.log 2>&1 & \
		pids="$$pids $$run:$$!"; \
	done; \
	status=0; for entry in $$pids; do \
		run=$${entry%%:*}; echo "=== $$run ==="; \
		if wait $${entry##*:}; then tail -n 8 test_logs/$$run.log; \
		else cat test_logs/$$run.log; status=1; fi; \
	done; \
	exit $$status
