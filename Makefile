# The two commands a newcomer runs: `make demo` and `make test`.
# Both bootstrap .venv from pyproject.toml, pinned by constraints.txt.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test chaos bench lint typecheck protos catalogues clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/olievlek up

# CI=true: a missing tool fails its test (naming the Debian package) and any skip fails the run.
# Two passes: most tests on two workers; tests marked `serial` (whole clusters that need the machine to
# themselves) alone after them. Prints its wall time.
test: export CI := true
test: $(STAMP)
	@start=$$(date +%s); rc=0; \
	bash scripts/ensure_debian_tools.sh \
	&& $(BIN)/ruff check . \
	&& bash scripts/typecheck.sh \
	&& $(BIN)/python -m pytest -n 2 -q -m "not serial" \
	&& { $(BIN)/python -m pytest -q -m serial || [ $$? -eq 5 ]; } || rc=$$?; \
	echo "make test: $$(( $$(date +%s) - start )) s wall, exit $$rc"; exit $$rc

# The long runs: 10,000 alerts with 10 broker kills (random seed, printed for replay), a 30 s partition
# with production keepalive, the same partition across network namespaces, 100,000 mutated envelopes, and the
# failover chaos (the primary PostgreSQL host lost under load; 1,000 alerts) three runs in a row.
chaos: $(STAMP)
	CHAOS_ALERTS=10000 CHAOS_KILLS=10 CHAOS_SEED=$${CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	PARTITION_SECONDS=30 PARTITION_KEEPALIVE=production \
	$(BIN)/python -m pytest -q -s tests/test_chaos.py tests/test_partition.py
	$(BIN)/python deploy/lab/netns_lab.py --partition-seconds 30
	FUZZ_COUNT=100000 FUZZ_SEED=$${CHAOS_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	$(BIN)/python -m pytest -q -s tests/test_fuzz.py
	SDC_HISTORIES=30 SDC_QUARTERS=8 SDC_TIMEOUT_S=3600 SDC_SEED=$${CHAOS_SEED:-20261207} \
	$(BIN)/python -m pytest -q -s tests/test_disclosure_sample.py
	base=$${CHAOS_SEED:-$$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}; for i in 1 2 3; do \
	  FAILOVER_ALERTS=1000 CHAOS_SEED=$$((base + i)) $(BIN)/python -m pytest -q -s -m serial \
	    tests/test_failover.py -k primary_host || exit 1; done

bench: $(STAMP)
	$(BIN)/python bench/route_bench.py
	$(BIN)/python bench/audit_bench.py
	$(BIN)/python bench/policy_bench.py
	$(BIN)/python bench/pseudonym_bench.py
	$(BIN)/python bench/query_bench.py
	$(BIN)/python bench/abuse_bench.py
	$(BIN)/python bench/sdc_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .
	bash scripts/typecheck.sh

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV)

# What a regisseur reads: extract the message ids, fill and compile the Dutch catalogue (committed).
catalogues: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k _ --no-location --sort-output --project olievlek -o olievlek/locale/olievlek.pot .
	$(BIN)/python scripts/nl_catalogue.py
