#!/usr/bin/env bash
# The main job for now: build kappa and run a round trip on the embedded log:
# create a topic, append keyed records, read them back, describe the topic.
# The log lives in ./kappa-data (override with KAPPA_LOG=<dir>).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p kappa-cli
kappa="${CARGO_TARGET_DIR:-target}/release/kappa"
export KAPPA_LOG="${KAPPA_LOG:-./kappa-data}"

if ! "$kappa" topics describe card-commands >/dev/null 2>&1; then
    "$kappa" topics create card-commands --partitions 3
fi
printf '%s\n' \
    'card-1:{"action":"set-limit","data":{"card":"card-1","limit":50000}}' \
    'card-2:{"action":"authorize","data":{"card":"card-2","amount":1250}}' \
    'card-1:{"action":"authorize","data":{"card":"card-1","amount":700}}' |
    "$kappa" produce card-commands --key-separator : --print-positions
"$kappa" consume card-commands --from-beginning --format json
"$kappa" topics describe card-commands

# The HTTP side: the gateway's demo service on the same log, driven with
# sync commands for two seconds.
out=$(mktemp)
"$kappa" demo --http 127.0.0.1:0 > "$out" &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do
    grep -q '^listening on' "$out" 2>/dev/null && break
    kill -0 "$demo" 2>/dev/null || { echo "kappa demo stopped" >&2; exit 1; }
    sleep 0.1
done
url=$(grep -o 'http://[0-9.:]*' "$out" | head -1)
[ -n "$url" ] || { echo "kappa demo did not start" >&2; exit 1; }
echo "demo gateway at $url (API documentation at $url/docs)"
"$kappa" load --url "$url" --sync --rate 500 --connections 8 --duration 2s
kill "$demo" 2>/dev/null || true
wait "$demo" 2>/dev/null || true

# The reference service, card spending limits, on its own log, with a
# steady demo stream of limits, authorizations and settlements for a few
# seconds; then one card's balance.
cargo build --release --locked -p card-limits
cards_log="${KAPPA_LOG}-card-limits"
"${CARGO_TARGET_DIR:-target}/release/card-limits" serve --insecure-no-auth --log "$cards_log" --http 127.0.0.1:0 --demo-rate 400 --demo-cards 100 > "$out" &
demo=$!
for _ in $(seq 1 100); do
    grep -q '^ready' "$out" 2>/dev/null && break
    kill -0 "$demo" 2>/dev/null || { echo "card-limits stopped" >&2; exit 1; }
    sleep 0.1
done
head -2 "$out"
sleep 4
port=$(grep -o 'http://127.0.0.1:[0-9]*' "$out" | head -1 | sed 's/.*://')
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /cards/card-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
echo "GET /cards/card-1:"
tail -1 <&3
echo
