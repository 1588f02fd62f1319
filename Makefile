# The two commands a newcomer needs: `make run` and `make test`. Both install what they need.
.PHONY: run test test-scylla chaos build console tools lint fmt bench bench-retry fuzz

CARGO ?= cargo

## run: build everything and start the whole pipeline on the embedded defaults (Ctrl-C stops)
run: tools build console
	@deploy/local/run.sh

## test: every test: formatting, lints, unit, contract and end-to-end tests, on real Apache Kafka brokers and a real CQL node (Apache Cassandra)
test: tools
	@CARGO="$(CARGO)" deploy/local/test.sh

## chaos: the fault-injection checker for CHAOS_MINUTES (default 30) on a real three-broker cluster; prints a table, fails on any violation (a 2-minute run is part of `make test`)
CHAOS_MINUTES ?= 30
CHAOS_SEED ?= $(shell date +%s)
chaos: tools build
	CHAOS_MINUTES=$(CHAOS_MINUTES) CHAOS_SEED=$(CHAOS_SEED) $(CARGO) test -p hookstream-e2e --test chaos -- --nocapture

## test-scylla: the store contract against ScyllaDB (needs Docker; starts the compose ScyllaDB node)
test-scylla:
	docker compose -f deploy/docker-compose.yml up -d --wait scylla
	HOOKSTREAM_TEST_SCYLLA=127.0.0.1:9042 $(CARGO) test -p hookstream-store --test contract -- --test-threads 1

## bench: the whole pipeline measured against this machine's ceiling, measured between the runs (release build, ~15 min; prints a table, writes target/bench/latest.json with a `summary` to compare runs by)
bench: tools
	$(CARGO) build --release --bins
	target/release/hookstream-bench pipeline $(BENCH_ARGS)

## bench-retry: how late retry tasks come due with many waiting (release build; prints figures)
bench-retry: tools
	$(CARGO) build --release --bins
	target/release/hookstream-bench retry-timing $(BENCH_ARGS)

## fuzz: every fuzz target for FUZZ_SECONDS each (default 60), growing the corpus in fuzz/corpus
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for target in event_body cloudevents_record avro_value topic_messages; do \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$target corpus/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

## build: the service binaries (debug profile, shared with the tests)
build:
	$(CARGO) build --workspace --bins

## console: build the web console into console/dist (npm packages pinned by console/package-lock.json); ingest serves it at /console
console:
	@deploy/local/build-console.sh

## tools: fetch Apache Kafka and Apache Cassandra (Maven Central, pinned) and the test tools, once
tools:
	@deploy/local/install-tools.sh

## lint: rustfmt and clippy, warnings as errors
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all
