# The two commands a new user needs: `make run` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# The suite runs in TEST_WORKERS processes (pytest-xdist); --dist loadfile keeps a module's tests,
# and the stacks its module-scoped fixtures start, in one worker. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

.PHONY: run-containers
# The access services as Docker containers of the Python image (README "Docker containers").
run-containers: $(VENV)/.installed
	bash tools/docker-deps.sh
	$(VENV)/bin/accessd local --containers

.PHONY: install run test test-all lint bench clean conformance chaos fuzz test-reverse

$(VENV)/.installed: setup.py tools/install.sh
	bash tools/install.sh

install: $(VENV)/.installed

run: $(VENV)/.installed
	bash tools/run-deps.sh
	$(VENV)/bin/accessd local

test: $(VENV)/.installed
	bash tools/test-deps.sh
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# One process: its slow load runs measure timings another worker would disturb.
test-all: $(VENV)/.installed
	bash tools/test-deps.sh
	$(PY) -m pytest -m "" --fuzz-scale 1 $(PYTEST_ARGS)

# The order guard: the fast directories and the modules sharing a process fixture, run
# backwards (pytest-reverse). A test that leans on what an earlier one left fails here.
REVERSE_PATHS ?= tests/executor tests/localmesos tests/services tests/api/test_apps.py \
	tests/api/test_marathon_shapes.py tests/api/test_marathon_definitions.py tests/api/test_jobs_api.py \
	$(filter-out tests/scheduler/test_integration_%,$(wildcard tests/scheduler/test_*.py)) \
	$(REVERSE_STACKS)
# The integration and top-level modules whose tests share a module-scoped stack (the others start
# their own per test, so order cannot reach them).
REVERSE_STACKS ?= $(addprefix tests/scheduler/test_integration_,agent_restart.py constraints.py \
	executor.py failover.py ha.py ha_jobs.py many.py marathon_fields.py master_storm.py \
	partition.py) tests/test_docs_commands.py tests/test_logs.py
test-reverse: $(VENV)/.installed
	bash tools/test-deps.sh
	$(PY) -m pytest $(XDIST) --reverse $(REVERSE_PATHS) $(PYTEST_ARGS)

# The API's schemathesis fuzz test at its full ~1,000 cases (make test runs a quarter of them).
fuzz: $(VENV)/.installed
	bash tools/test-deps.sh
	$(PY) -m pytest --fuzz-scale 1 tests/api/test_openapi_fuzz.py $(PYTEST_ARGS)

# The same scenarios on a real Mesos 1.12 (../shared/mesos/ tarball; absent: one line, exit 0)
# and on localmesos, with a side-by-side table (conformance/README.md).
conformance: $(VENV)/.installed
	bash tools/test-deps.sh
	bash tools/conformance.sh

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	bash tools/test-deps.sh
	bash tools/bench-deps.sh
	$(PY) bench/placement.py
	$(PY) bench/api.py
	$(PY) bench/services.py
	$(PY) bench/startup.py
	$(PY) bench/failover.py
	$(PY) bench/jobs.py
	$(PY) bench/scale.py
	$(PY) bench/regex_constraint.py
	$(PY) bench/logs.py
	$(PY) bench/lb.py
	bash tools/docker-deps.sh
	$(PY) bench/docker.py

# The fault suite (bench/chaos.py): ~100 faults into the real stack, ~6-10 min; not in `test`.
chaos: $(VENV)/.installed
	bash tools/test-deps.sh
	$(PY) bench/chaos.py $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
