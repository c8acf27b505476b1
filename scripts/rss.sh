#!/usr/bin/env bash
# The memory curve of card-limits under a steady load: serves on a scratch
# embedded log with its own demo stream (--demo-rate, 2,000 commands/s by
# default) for DURATION_S seconds (600), and every SAMPLE_S seconds (30)
# samples its resident set, the log's size on disk and the commands taken.
# Prints a table, then one JSON line. Memory is bounded when the resident
# set levels off while the log keeps growing.
#
#   scripts/rss.sh                     # builds the release binary first
#   scripts/rss.sh target/debug/card-limits
#   RATE=2000 DURATION_S=600 SAMPLE_S=30 scripts/rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-}"
if [ -z "$binary" ]; then
    cargo build --release --locked -p card-limits >&2
    binary=target/release/card-limits
fi
[ -x "$binary" ] || { echo "error: $binary is not an executable card-limits" >&2; exit 1; }
rate="${RATE:-2000}"
duration="${DURATION_S:-600}"
every="${SAMPLE_S:-30}"

scratch="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$binary" serve --log "$scratch/log" --http "127.0.0.1:$port" --insecure-no-auth \
    --demo-rate "$rate" >"$scratch/out" 2>"$scratch/err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT

# Ready once it says so on its standard output.
for _ in $(seq 1 600); do
    grep -qx ready "$scratch/out" && break
    kill -0 "$pid" 2>/dev/null || { cat "$scratch/err" >&2; echo "error: card-limits exited at start" >&2; exit 1; }
    sleep 0.1
done
grep -qx ready "$scratch/out" || { echo "error: card-limits was not ready within 60 s" >&2; exit 1; }

commands() {
    curl -fsS "http://127.0.0.1:$port/metrics" \
        | awk '/^kappa_commands_total/ { n += $NF } END { printf "%d", n }'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
log_kib() { du -sk "$scratch/log" | cut -f1; }

printf '%8s %10s %10s %12s\n' seconds rss_mib log_mib commands
samples=()
start=$SECONDS
while :; do
    t=$((SECONDS - start))
    kill -0 "$pid" 2>/dev/null || { cat "$scratch/err" >&2; echo "error: card-limits stopped at ${t} s" >&2; exit 1; }
    rss=$(rss_kib); log=$(log_kib); n=$(commands)
    awk -v t="$t" -v r="$rss" -v l="$log" -v n="$n" 'BEGIN { printf "%8d %10.1f %10.1f %12d\n", t, r / 1024, l / 1024, n }'
    samples+=("{\"seconds\":$t,\"rss_kib\":$rss,\"log_kib\":$log,\"commands\":$n}")
    [ "$t" -ge "$duration" ] && break
    sleep "$every"
done
lines=$(wc -l <"$scratch/err")
(IFS=,; echo "{\"rate\":$rate,\"duration_s\":$duration,\"log_lines\":$lines,\"samples\":[${samples[*]}]}")
