#!/usr/bin/env bash
# The main job for now: build kappa and run a round trip on the embedded log:
# create a topic, append keyed records, read them back, describe the topic.
# The log lives in ./kappa-data (override with KAPPA_LOG=<dir>).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p kappa-cli
kappa=target/release/kappa
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
