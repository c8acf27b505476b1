#!/usr/bin/env bash
# The main job: the card spending-limit system on the embedded log, as the
# article draws it: services in processes of their own, connected only by
# the topics of one log, with a steady demo stream (limits for a few
# thousand cards, authorizations, later settlements, some over the limit,
# some retried).
#
#   decisions  card-limits serve     the gateway and the decision topology;
#                                    serves its log over the Kafka protocol
#   views      card-limits views     full-text index of authorizations (and
#                                    PostgreSQL tables when CARD_LIMITS_POSTGRES
#                                    is set; create them first: card-limits
#                                    postgres-schema)
#   notifier   card-limits notifier  each limit-threshold-reached to a webhook:
#                                    DEMO_NOTIFY_URL, or a stand-in receiver
#                                    that keeps them in $KAPPA_LOG-notifications.jsonl
#   totals     merchant_totals.py    per-merchant daily totals, in Python with a
#                                    stock Kafka client and no Kappa code
#
# It prints where each is and serves until interrupted (ctrl-c);
# DEMO_SECONDS=N stops them all after N seconds instead. The log lives in
# ./kappa-data (KAPPA_LOG=<dir>); each service's output in $KAPPA_LOG-run/.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_openssl
need_python_kafka
cargo build --release --locked -p card-limits
bin="${CARGO_TARGET_DIR:-target}/release/card-limits"
export KAPPA_LOG="${KAPPA_LOG:-./kappa-data}"
export KAPPA_STATE_DIR="${KAPPA_STATE_DIR:-$KAPPA_LOG-state}"
http="${DEMO_HTTP:-127.0.0.1:8080}"
kafka="${DEMO_KAFKA:-127.0.0.1:9092}"
notifier_http="${DEMO_NOTIFIER_HTTP:-127.0.0.1:8081}"
views_http="${DEMO_VIEWS_HTTP:-127.0.0.1:8082}"
totals_http="${DEMO_TOTALS_HTTP:-127.0.0.1:8090}"
receiver="${DEMO_RECEIVER:-127.0.0.1:9000}"
run="$KAPPA_LOG-run"
mkdir -p "$run"

pids=()
names=()
# The last started stops first; each gets SIGTERM, a graceful stop (a
# script's background jobs ignore SIGINT), and one that does not stop
# cleanly is named.
stop_all() {
    local i status failed=0
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || continue
        status=0
        wait "${pids[$i]}" || status=$?
        if [ "$status" -ne 0 ]; then
            echo "error: ${names[$i]} stopped with status $status (see $run/${names[$i]}.err)" >&2
            failed=1
        fi
    done
    return "$failed"
}
trap 'stop_all || exit 1' EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs it in the background, its output in $run/NAME.{out,err}.
start() {
    local name="$1"
    shift
    "$@" >"$run/$name.out" 2>"$run/$name.err" &
    pids+=("$!")
    names+=("$name")
}

# await NAME PATTERN: waits until NAME has printed a line matching PATTERN.
await() {
    local name="$1" pattern="$2" pid="${pids[-1]}" i
    for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && pid="${pids[$i]}"; done
    for _ in $(seq 1200); do
        grep -q "$pattern" "$run/$name.out" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $name stopped:" >&2
            cat "$run/$name.err" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "error: $name did not say \"$pattern\" within 2 minutes (its output: $run/$name.*)" >&2
    exit 1
}

# Without CARD_LIMITS_SECURITY (a settings file, docs/security.md) the demo
# runs in development mode: no credentials, loopback only.
serve=(serve --log "$KAPPA_LOG" --http "$http" --kafka-listen "$kafka"
       --demo-rate "${DEMO_RATE:-200}" --demo-cards "${DEMO_CARDS:-3000}")
if [ -z "${CARD_LIMITS_SECURITY:-}" ]; then
    serve+=(--insecure-no-auth)
fi
start decisions "$bin" "${serve[@]}"
await decisions '^serving the log to Kafka clients'

views=(views --log "kafka://$kafka" --search-dir "${KAPPA_SEARCH:-$KAPPA_LOG-search}" --http "$views_http")
if [ -n "${CARD_LIMITS_POSTGRES:-}" ]; then
    views+=(--postgres "$CARD_LIMITS_POSTGRES")
fi
start views "$bin" "${views[@]}"

notify="${DEMO_NOTIFY_URL:-}"
if [ -z "$notify" ]; then
    start receiver python3 apps/card-limits/demo/notification_receiver.py \
        --listen "$receiver" --out "$KAPPA_LOG-notifications.jsonl"
    await receiver '^notification receiver'
    notify="http://$receiver/notify"
fi
start notifier "$bin" notifier --log "kafka://$kafka" --notify-url "$notify" --http "$notifier_http"
start totals "$KAPPA_PYTHON" apps/card-limits/merchant-totals/merchant_totals.py \
    --bootstrap "$kafka" --db "$KAPPA_LOG-totals.sqlite" --http "$totals_http"
await views '^card-limits views'
await notifier '^card-limits notifier'
await totals '^merchant-totals'

cat <<EOF
card-limits: four services on one log, each a process of its own (output in $run/)
  decisions  http://$http  (API docs /docs, console /console, cards /cards/card-1)
             its log to Kafka clients at $kafka (kcat -b $kafka -L)
  views      http://$views_http  (/search/authorizations?q=coffee, /health, /metrics)
  notifier   http://$notifier_http  (/health, /metrics), notifying $notify
  totals     http://$totals_http/totals  (Python, confluent-kafka)
EOF
[ -z "${DEMO_NOTIFY_URL:-}" ] && echo "  receiver   http://$receiver/notify, keeping $KAPPA_LOG-notifications.jsonl"
echo "sending ${DEMO_RATE:-200} demo commands/s over ${DEMO_CARDS:-3000} cards; ctrl-c stops them all"

if [ -n "${DEMO_SECONDS:-}" ]; then
    sleep "$DEMO_SECONDS"
    exit 0
fi
# Until ctrl-c, or until a service stops by itself.
status=0
wait -n "${pids[@]}" || status=$?
echo "a service stopped (status $status); stopping the others (output in $run/)" >&2
exit 1
