PYTHON ?= python3
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider

# pip builds the editable install in an environment of its own, with the
# build requirement of pyproject.toml (setuptools >= 77) installed there,
# unless this one has it already: then it builds here (about 8 s less).
BUILD_HERE = $(shell $(PYTHON) -c "import setuptools, sys; \
	sys.exit(int(setuptools.__version__.split('.')[0]) < 77)" 2>/dev/null \
	&& echo --no-build-isolation)

.PHONY: demo test lint install-demo install-test

demo: install-demo
	$(PYTHON) examples/first_token_recall.py --output-dir demo_output

install-demo:
	$(PYTHON) -m pip install -q $(BUILD_HERE) -e ".[tensorflow,examples]"

install-test:
	$(PYTHON) -m pip install -q $(BUILD_HERE) -e ".[tensorflow,jax,torch,test,examples]"

lint:
	$(PYTHON) -m ruff check keras_rmt tests examples benchmarks
	$(PYTHON) -m ruff format --check keras_rmt tests examples benchmarks

# One pytest process per backend, and one under TensorFlow for the tests
# marked `backend_independent` (NumPy, tf.data and string work, the wheel
# check), which the per-backend runs deselect, so they run once. They run
# in two lanes, one per core, each lane's processes one after another: four
# processes at once share the two cores by time slices and spend more CPU
# on the same work (the whole `make test`: 1,812 CPU seconds four at once,
# 1,645 in lanes; JAX's associative-memory tests: 137 beside three busy
# processes, 115-120 alone or beside one). JAX's run, the longest, leaves
# its fit tests (tests/test_training.py) to a process of its own in the
# other lane, so that the lanes end together. Each run writes
# test_logs/RUN.log (RUN: a name in LANES), printed whole when it fails.
LANES := jax,backend_independent tensorflow,torch,jax_fit
JAX_FIT := tests/test_training.py

test: install-test lint
	@mkdir -p test_logs; \
	run() { \
		backend=$$1; marks="not backend_independent"; paths=tests; \
		case $$1 in \
		backend_independent) backend=tensorflow; marks=$$1;; \
		jax) paths="tests --deselect $(JAX_FIT)";; \
		jax_fit) backend=jax; paths=$(JAX_FIT);; \
		esac; \
		KERAS_BACKEND=$$backend $(PYTEST) --durations=30 -m "$$marks" \
			$$paths > test_logs/$$1.log 2>&1; \
		echo $$? > test_logs/$$1.status; \
	}; \
	for lane in $(LANES); do \
		(for run in $$(echo $$lane | tr , " "); do run $$run; done) & \
	done; \
	wait; status=0; \
	for run in $$(echo $(LANES) | tr , " "); do \
		echo "=== $$run ==="; \
		if [ "$$(cat test_logs/$$run.status)" = 0 ]; then \
			tail -n 8 test_logs/$$run.log; \
		else cat test_logs/$$run.log; status=1; fi; \
	done; \
	exit $$status
