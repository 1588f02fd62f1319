#!/usr/bin/env bash
# `make test`: every test, on real peers.
#   - Apache Kafka: each end-to-end test starts its own brokers (deploy/kafka/kafka.sh).
#   - A CQL node for the ScyllaDB store: Apache Cassandra (deploy/cassandra/cassandra.sh), one
#     for the whole run, started while the code compiles; HOOKSTREAM_TEST_SCYLLA names it. Set
#     HOOKSTREAM_TEST_SCYLLA=host:port yourself to use a node of your own (a ScyllaDB, say).
# Whatever happens (a failed test, Ctrl-C), every JVM this run started is stopped on the way out.
set -euo pipefail
command -v pkill >/dev/null || { echo "make test needs pkill (Debian: apt-get install procps)" >&2; exit 1; }

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
CARGO=${CARGO:-cargo}
export HOOKSTREAM_RUN_ID="hookstream-test-$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/hookstream-test.XXXXXX")

# Brokers and the CQL node carry -Dhookstream.run=<this run> (and nothing of another run's).
marker="-Dhookstream[.]run=$HOOKSTREAM_RUN_ID( |\$)"
stop_all() {
    pkill -TERM -f -- "$marker" || true
    for _ in $(seq 100); do
        pgrep -f -- "$marker" >/dev/null || break
        sleep 0.1
    done
    pkill -KILL -f -- "$marker" || true
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

if [ -z "${HOOKSTREAM_TEST_SCYLLA:-}" ]; then
    cql_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # Every contract test makes its own keyspace (a few dozen of them, ~20 tables each), and each
    # table costs the node heap: 2 GiB leaves room to spare (1 GiB ran out after a few runs).
    CASSANDRA_HEAP="${CASSANDRA_HEAP:-2G}" \
        deploy/cassandra/cassandra.sh start --dir "$work/cassandra" --port "$cql_port" \
        > "$work/cassandra.log" 2>&1 &
    cassandra_pid=$!
    export HOOKSTREAM_TEST_SCYLLA="127.0.0.1:$cql_port"
fi

# The binaries the end-to-end tests run, then formatting and lints, while the node starts. The
# previous release's first (the rolling-upgrade test starts from them), since its build passes
# through target/debug, which this checkout's build then takes back.
CARGO="$CARGO" deploy/local/previous-release.sh ||
    echo "warning: the previous release was not built; the rolling-upgrade test will fail" >&2
$CARGO build --workspace --bins
# The web console the browser test drives (tests/e2e/tests/console.rs).
deploy/local/build-console.sh
$CARGO fmt --all --check
$CARGO clippy --workspace --all-targets -- -D warnings

if [ -n "${cassandra_pid:-}" ]; then
    echo "Waiting for Apache Cassandra on $HOOKSTREAM_TEST_SCYLLA..."
    # Cassandra logs this once its CQL listener is up.
    ready() { grep -q "Startup complete" "$work/cassandra.log"; }
    for _ in $(seq 1800); do
        ready && break
        kill -0 "$cassandra_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! ready; then
        echo "error: Apache Cassandra did not start within 180 s; the end of its log:" >&2
        tail -n 40 "$work/cassandra.log" >&2
        exit 1
    fi
fi

$CARGO test --workspace --all-targets
