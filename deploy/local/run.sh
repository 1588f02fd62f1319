#!/usr/bin/env bash
# `make run`: the whole pipeline on one machine, on the embedded defaults.
#   - Apache Kafka (one node, KRaft) on 127.0.0.1:9092, its data in .hookstream/kafka
#   - the embedded store in .hookstream/store.db
#   - ingest (API on 127.0.0.1:8080, ops on 127.0.0.1:9096), the dispatcher (ops on 127.0.0.1:9091) and the retry tier
#     (ops on 127.0.0.1:9093), the replay service (ops on 127.0.0.1:9094); ingest also reads
#     CloudEvents from the `domain-events` topic
# Ctrl-C stops everything cleanly; the next run finds the data of this one.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
data="${HOOKSTREAM_DATA_DIR:-$root/.hookstream}"
bin="${HOOKSTREAM_BIN_DIR:-$root/target/debug}"
broker_addr=127.0.0.1:9092
controller_addr=127.0.0.1:9095
mkdir -p "$data/kafka"

# Settings of a local run; anything already set in the environment wins.
export HOOKSTREAM_KAFKA_BROKERS="${HOOKSTREAM_KAFKA_BROKERS:-$broker_addr}"
export HOOKSTREAM_STORE="${HOOKSTREAM_STORE:-sqlite://$data/store.db}"
export HOOKSTREAM_HTTP_ADDR="${HOOKSTREAM_HTTP_ADDR:-127.0.0.1:8080}"
export HOOKSTREAM_INGEST_OPS_ADDR="${HOOKSTREAM_INGEST_OPS_ADDR:-127.0.0.1:9096}"
export HOOKSTREAM_DISPATCHER_OPS_ADDR="${HOOKSTREAM_DISPATCHER_OPS_ADDR:-127.0.0.1:9091}"
export HOOKSTREAM_RETRY_TIER_OPS_ADDR="${HOOKSTREAM_RETRY_TIER_OPS_ADDR:-127.0.0.1:9093}"
export HOOKSTREAM_REPLAY_OPS_ADDR="${HOOKSTREAM_REPLAY_OPS_ADDR:-127.0.0.1:9094}"
# The web console (`make run` builds it first), at http://$HOOKSTREAM_HTTP_ADDR/console.
if [ -z "${HOOKSTREAM_CONSOLE_DIR:-}" ]; then
    if [ -f "$root/console/dist/index.html" ]; then
        export HOOKSTREAM_CONSOLE_DIR="$root/console/dist"
    else
        echo "warning: the console is not built (make console); starting without it" >&2
    fi
fi
# Let a newcomer send webhooks to a receiver on this machine.
export HOOKSTREAM_ALLOW_HTTP_ENDPOINTS="${HOOKSTREAM_ALLOW_HTTP_ENDPOINTS:-true}"
export HOOKSTREAM_ALLOWED_DESTINATIONS="${HOOKSTREAM_ALLOWED_DESTINATIONS:-127.0.0.0/8,::1/128}"
# Producers may also publish CloudEvents on this topic instead of calling the API.
export HOOKSTREAM_SOURCE_TOPICS="${HOOKSTREAM_SOURCE_TOPICS-domain-events:cloudevents}"
if [ -z "${HOOKSTREAM_API_TOKEN:-}" ]; then
    # Generated once and kept with the data, so a second run accepts the same token.
    if [ ! -s "$data/api-token" ]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' > "$data/api-token")
    fi
    HOOKSTREAM_API_TOKEN=$(cat "$data/api-token")
    export HOOKSTREAM_API_TOKEN
    token_note="generated, kept in $data/api-token"
else
    token_note="from HOOKSTREAM_API_TOKEN"
fi

if [ -z "${HOOKSTREAM_SECRET_KEY:-}" ]; then
    # Seals the endpoints' signing secrets in the store; kept with the data, like the token.
    if [ ! -s "$data/secret-key" ]; then
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' > "$data/secret-key")
    fi
    HOOKSTREAM_SECRET_KEY=$(cat "$data/secret-key")
    export HOOKSTREAM_SECRET_KEY
fi

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for addr in "$broker_addr" "$controller_addr" "$HOOKSTREAM_HTTP_ADDR" "$HOOKSTREAM_DISPATCHER_OPS_ADDR" \
    "$HOOKSTREAM_RETRY_TIER_OPS_ADDR" "$HOOKSTREAM_REPLAY_OPS_ADDR"; do
    if port_open "$addr"; then
        echo "error: $addr is already in use; stop what listens there (an earlier make run?)" >&2
        exit 1
    fi
done

pids=()
stop_all() {
    trap - INT TERM EXIT
    echo "stopping..."
    # Services first, so they finish work in flight while the broker is still up.
    for pid in "${pids[@]:1}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]:1}"; do wait "$pid" 2>/dev/null || true; done
    kill -TERM "${pids[0]}" 2>/dev/null || true
    # A clean broker stop takes a few seconds; one that hangs is killed rather than left behind.
    for _ in $(seq 300); do kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[0]}" 2>/dev/null || true
    wait "${pids[0]}" 2>/dev/null || true
    echo "stopped; data kept in $data"
}
trap stop_all INT TERM EXIT

# The broker runs in its own session so that Ctrl-C reaches only the services, which then
# finish their work while the broker is still up; stop_all stops the broker last. Its storage is
# formatted on the first run and kept in $data/kafka.
# The terminal shows the broker's warnings and errors; its whole log is in $data/kafka/broker.log.
# An entry starts with "[time] LEVEL"; indented lines after it (a config dump, a stack trace)
# belong to it; anything else (the JVM's own errors) is always shown.
warnings_only() {
    awk '/^\[[^]]*\] [A-Z]+ / { show = ($3 != "INFO" && $3 != "DEBUG"); if (show) print; fflush(); next }
         /^[ \t]/ { if (show) print; fflush(); next }
         { print; fflush() }'
}
rm -f "$data/kafka/broker.log"
(exec setsid "$root/deploy/kafka/kafka.sh" node --dir "$data/kafka" \
    --port "${broker_addr##*:}" --controller-port "${controller_addr##*:}") \
    > >(tee "$data/kafka/broker.log" | warnings_only | sed -u 's/^/broker     | /') 2>&1 &
pids+=($!)
echo "Starting Apache Kafka on $broker_addr..."
for _ in $(seq 1200); do
    grep -q "Kafka Server started" "$data/kafka/broker.log" 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "Kafka Server started" "$data/kafka/broker.log" 2>/dev/null; then
    echo "error: the broker did not start within 120 s; the end of its log:" >&2
    tail -n 30 "$data/kafka/broker.log" >&2
    exit 1
fi

"$bin/hookstream-ingest" > >(sed -u 's/^/ingest     | /') 2>&1 &
pids+=($!)
"$bin/hookstream-dispatcher" > >(sed -u 's/^/dispatcher | /') 2>&1 &
pids+=($!)
"$bin/hookstream-retry-tier" > >(sed -u 's/^/retry-tier | /') 2>&1 &
pids+=($!)
"$bin/hookstream-replay" > >(sed -u 's/^/replay     | /') 2>&1 &
pids+=($!)

cat <<MSG

Hookstream is starting.
  API          http://$HOOKSTREAM_HTTP_ADDR   (token $token_note)
  API token    $HOOKSTREAM_API_TOKEN
  Console      http://$HOOKSTREAM_HTTP_ADDR/console   (sign in with the API token)
  Ingest       http://$HOOKSTREAM_INGEST_OPS_ADDR/metrics
  Dispatcher   http://$HOOKSTREAM_DISPATCHER_OPS_ADDR/metrics
  Retry tier   http://$HOOKSTREAM_RETRY_TIER_OPS_ADDR/metrics
  Replay       http://$HOOKSTREAM_REPLAY_OPS_ADDR/metrics   (CLI: target/debug/hookstream --help)
  Broker       $broker_addr   (source topics: ${HOOKSTREAM_SOURCE_TOPICS:-none})
  Data         $data
Try it: README.md, "Quickstart". Ctrl-C stops everything.

MSG

# When any process ends (Ctrl-C ends them all), stop the rest; say so if one failed.
set +e
wait -n "${pids[@]}"
status=$?
case $status in
    0 | 130 | 143) ;;
    *) echo "a process exited with status $status; stopping the others" >&2 ;;
esac
exit "$status"
