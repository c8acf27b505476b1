#!/usr/bin/env bash
# The main job: the card spending-limit service on the embedded log, with a
# steady demo stream (limits for a few thousand cards, authorizations, later
# settlements, some over the limit, some retried). It prints the address of
# its API and serves until interrupted (ctrl-c); DEMO_SECONDS=N stops it
# after N seconds instead. The log lives in ./kappa-data (KAPPA_LOG=<dir>),
# the full-text index of authorizations (GET /search/authorizations?q=coffee)
# in ./kappa-data-search. Threshold notifications go to DEMO_NOTIFY_URL when
# it is set; the PostgreSQL tables are kept when CARD_LIMITS_POSTGRES is set
# (create them first: card-limits postgres-schema).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_openssl
cargo build --release --locked -p card-limits
bin="${CARGO_TARGET_DIR:-target}/release/card-limits"
export KAPPA_LOG="${KAPPA_LOG:-./kappa-data}"
# Without CARD_LIMITS_SECURITY (a settings file, docs/security.md) the demo
# runs in development mode: no credentials, loopback only.
args=(serve --log "$KAPPA_LOG" --http "${DEMO_HTTP:-127.0.0.1:8080}"
      --demo-rate "${DEMO_RATE:-200}" --demo-cards "${DEMO_CARDS:-3000}"
      --search-dir "${KAPPA_SEARCH:-$KAPPA_LOG-search}")
if [ -z "${CARD_LIMITS_SECURITY:-}" ]; then
    args+=(--insecure-no-auth)
fi
if [ -n "${DEMO_NOTIFY_URL:-}" ]; then
    args+=(--notify-url "$DEMO_NOTIFY_URL")
fi
if [ -n "${DEMO_SECONDS:-}" ]; then
    # timeout says 124 when it stopped the service as asked: that is success.
    status=0
    timeout --signal=INT "$DEMO_SECONDS" "$bin" "${args[@]}" || status=$?
    [ "$status" -eq 124 ] && status=0
    exit "$status"
fi
exec "$bin" "${args[@]}"
