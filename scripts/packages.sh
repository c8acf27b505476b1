# Installing what the build and the tests need from Debian's packages.
# Sourced by scripts/test.sh and scripts/demo.sh.

apt_install() {
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$@" >/dev/null; }
}

# librdkafka is built with OpenSSL (TLS and SASL/SCRAM to Kafka brokers):
# it needs OpenSSL's headers and pkg-config to find them.
need_openssl() {
    if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl; then
        echo "installing libssl-dev and pkg-config from Debian's packages (librdkafka is built with OpenSSL)" >&2
        apt_install libssl-dev pkg-config
        pkg-config --exists openssl || { echo "error: OpenSSL's headers are still missing; install Debian's libssl-dev and pkg-config" >&2; exit 1; }
    fi
}
