#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/integration/property/crash
# tests (nextest) and doctests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust (https://rustup.rs) and re-run" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest from crates.io" >&2
    cargo install cargo-nextest --locked
fi

# shellcheck source=scripts/packages.sh
. scripts/packages.sh
need_openssl

# The PostgreSQL sink's tests start a private server from Debian's
# PostgreSQL programs (kappa_effects::postgres::TempCluster).
if [ -z "${KAPPA_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian's packages (the sink tests need its server programs)" >&2
    apt_install postgresql
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        echo "error: PostgreSQL's server programs are still missing; install Debian's postgresql package" >&2
        exit 1
    fi
fi

# The Kafka backend's tests run against tansu, a Kafka-compatible broker
# (kappa_kafka::testing::Tansu starts it), and read what Kappa wrote with kcat.
# tansu takes minutes to build, so it is kept outside the repository.
export KAPPA_TOOLS="${KAPPA_TOOLS:-$HOME/.cache/kappa-tools}"
if [ -z "${KAPPA_TANSU:-}" ] && [ ! -x "$KAPPA_TOOLS/tansu/bin/tansu" ]; then
    echo "installing the tansu broker from crates.io into $KAPPA_TOOLS/tansu (about 7 minutes)" >&2
    cargo install tansu --version 0.6.0 --locked --features dynostore,libsql --root "$KAPPA_TOOLS/tansu"
fi
if ! command -v kcat >/dev/null 2>&1; then
    echo "installing kcat from Debian's packages (the Kafka interoperability test reads with it)" >&2
    apt_install kcat
    command -v kcat >/dev/null 2>&1 || { echo "error: kcat is still missing; install Debian's kcat package" >&2; exit 1; }
fi

# The Kafka-protocol node's interoperability tests run stock clients
# (crates/kappa-cli/tests/broker_interop.rs): Python's confluent-kafka and
# kafka-python in a virtualenv kept outside the repository (which
# card-limits' Python service runs in too), and kafkajs from npm beside its
# script.
clients=crates/kappa-node/tests/clients
need_python_kafka
need_apache_kafka
if [ ! -d "$clients/node/node_modules/kafkajs" ]; then
    echo "installing kafkajs from npm into $clients/node/node_modules" >&2
    npm ci --prefix "$clients/node" --no-audit --no-fund >/dev/null
fi

# The console's browser tests drive Debian's Chromium with playwright-core
# (apps/card-limits/tests/console.rs runs the spec with Node).
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "installing Chromium from Debian's packages (the console's browser tests drive it)" >&2
    apt_install chromium
    [ -x "$CHROMIUM" ] || { echo "error: $CHROMIUM is still missing; install Debian's chromium package" >&2; exit 1; }
fi
if ! command -v node >/dev/null 2>&1; then
    echo "error: Node.js is missing (the console's browser tests run with it); install Debian's nodejs and npm packages" >&2
    exit 1
fi
console_tests=apps/card-limits/tests/console
if ! grep -qs '"version": "1.64.1"' "$console_tests/node_modules/playwright-core/package.json"; then
    echo "installing playwright-core from npm into $console_tests/node_modules" >&2
    npm ci --prefix "$console_tests" --no-audit --no-fund >/dev/null
fi

# A clean build never reuses incremental caches; they only take disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Each step says when it starts, so a slow one shows in CI's log.
step() { echo "== $* (at ${SECONDS} s)" >&2; }
step "formatting"
cargo fmt --all --check
rustfmt --edition 2024 --check crates/kappa-auth/fuzz/fuzz_targets/*.rs crates/kappa-node/fuzz/fuzz_targets/*.rs
step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "tests"
cargo nextest run --workspace --locked --no-fail-fast
step "doctests"
cargo test --workspace --doc --locked

# Fuzz token parsing, policy evaluation and Kafka request decoding for a
# bounded time (FUZZ_SECONDS per target): built one after another, then
# run side by side. cargo-fuzz passes flags that stable rustc accepts only
# with RUSTC_BOOTSTRAP; no sanitizer is needed for panics and assertions.
step "fuzzing"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io" >&2
    cargo install cargo-fuzz --locked
fi
fuzz_targets=(kappa-auth:token kappa-auth:policy kappa-node:request)
for entry in "${fuzz_targets[@]}"; do
    (cd "crates/${entry%%:*}" && RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none "${entry#*:}")
done
fuzz_logs="$(mktemp -d)"
fuzz_runs=()
for entry in "${fuzz_targets[@]}"; do
    crate="crates/${entry%%:*}"
    target="${entry#*:}"
    mkdir -p "$crate/fuzz/corpus/$target"
    (cd "$crate" && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" -- -max_total_time="${FUZZ_SECONDS:-30}") \
        >"$fuzz_logs/$target" 2>&1 &
    fuzz_runs+=($!)
done
fuzz_failed=0
for i in "${!fuzz_targets[@]}"; do
    entry="${fuzz_targets[$i]}"
    log="$fuzz_logs/${entry#*:}"
    if ! wait "${fuzz_runs[$i]}"; then
        cat "$log"
        echo "error: fuzz target $entry failed (output above; a crashing input is kept in crates/${entry%%:*}/fuzz/artifacts/${entry#*:})" >&2
        fuzz_failed=1
        continue
    fi
    echo "fuzz $entry: $(grep -E '^Done' "$log" || tail -n 1 "$log")"
done
rm -rf "$fuzz_logs"
step "done"
exit "$fuzz_failed"
