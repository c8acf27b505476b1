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

# Apache Kafka from Maven Central (the broker and its dependencies, run
# with the machine's Java 17): the Kafka-protocol node's differential tests
# run the same client suite on it and on `kappa broker`. Kept outside the
# repository; exports KAPPA_KAFKA_LIBS, the folder of its jars.
KAFKA_VERSION=4.1.1
need_apache_kafka() {
    local dir="$KAPPA_TOOLS/kafka-$KAFKA_VERSION"
    if [ ! -f "$dir/libs/.complete" ]; then
        command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
        command -v mvn >/dev/null 2>&1 || apt_install maven
        echo "installing Apache Kafka $KAFKA_VERSION from Maven Central into $dir" >&2
        mkdir -p "$dir"
        cat >"$dir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kappa.tools</groupId><artifactId>apache-kafka</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
EOF
        mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/libs" -DincludeScope=runtime \
            || { echo "error: fetching Apache Kafka's jars from Maven Central failed (output above)" >&2; exit 1; }
        touch "$dir/libs/.complete"
    fi
    export KAPPA_KAFKA_LIBS="$dir/libs"
}

# Python's Kafka clients (confluent-kafka, kafka-python and the compression
# libraries kafka-python uses) in a virtualenv kept outside the repository,
# at $KAPPA_TOOLS/py: the node's interoperability tests, card-limits'
# Python service (apps/card-limits/merchant-totals) and its API conformance
# test's schemathesis (apps/card-limits/tests/api_document.rs) run in it. Made again
# when the requirement files change; exports KAPPA_PYTHON.
need_python_kafka() {
    local venv="${KAPPA_TOOLS:-$HOME/.cache/kappa-tools}/py"
    local requirements=(crates/kappa-node/tests/clients/python/requirements.txt
                        apps/card-limits/merchant-totals/requirements.txt
                        apps/card-limits/tests/requirements.txt)
    if ! "$venv/bin/python" -c 'import confluent_kafka, kafka' >/dev/null 2>&1 \
        || ! cat "${requirements[@]}" | cmp -s - "$venv/requirements.txt"; then
        echo "installing the Python Kafka clients and schemathesis into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            -r "${requirements[0]}" -r "${requirements[1]}" -r "${requirements[2]}" \
            || { echo "error: installing the test virtualenv's packages from PyPI failed (output above)" >&2; exit 1; }
        cat "${requirements[@]}" >"$venv/requirements.txt"
    fi
    export KAPPA_PYTHON="$venv/bin/python"
}
