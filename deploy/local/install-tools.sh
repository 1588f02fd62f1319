#!/usr/bin/env bash
# Installs the tools a local run and the tests need, once; each is cached outside the work tree.
#   Apache Kafka (deploy/kafka/pom.xml, pinned): the broker's jars from Maven Central, copied into
#   ~/.cache/hookstream by deploy/kafka/kafka.sh (needs Java 17 and Maven; Maven caches in ~/.m2).
#   Apache Cassandra (deploy/cassandra/pom.xml, pinned): the CQL node the tests run the ScyllaDB
#   store on, fetched the same way by deploy/cassandra/cassandra.sh.
#   standardwebhooks (PyPI), pinned: a signature verifier nobody here wrote, for the tests.
#   cryptography (PyPI), pinned: the ed25519 (`v1a`) verifier the README shows runs on it.
#   schemathesis (PyPI), pinned with its hypothesis: property-based tests of the API, driven by
#   its OpenAPI document.
#   promtool (Debian's prometheus package): checks the metrics and the alert rules.
#   Node.js and npm (Debian's nodejs and npm packages), when missing: run the README's
#   JavaScript verifier, and build and test the web console.
#   Chromium (Debian's chromium package), when missing: the browser the console's tests drive.
#   helm-python-sdk (PyPI, the Helm v4 engine) and kubernetes-validate (PyPI, the Kubernetes
#   schemas), pinned: render, lint and validate the Helm chart.
set -euo pipefail

STANDARDWEBHOOKS_VERSION=1.1.0
CRYPTOGRAPHY_VERSION=48.0.0
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.15
HELM_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
root=$(cd "$(dirname "$0")/../.." && pwd)

"$root/deploy/kafka/kafka.sh" fetch
"$root/deploy/cassandra/cassandra.sh" fetch

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('standardwebhooks') != '$STANDARDWEBHOOKS_VERSION')" 2>/dev/null; then
    echo "Installing standardwebhooks $STANDARDWEBHOOKS_VERSION (Python, for the tests)..." >&2
    python3 -m pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('cryptography') != '$CRYPTOGRAPHY_VERSION')" 2>/dev/null; then
    echo "Installing cryptography $CRYPTOGRAPHY_VERSION (Python, for the ed25519 tests)..." >&2
    python3 -m pip install --quiet --disable-pip-version-check "cryptography==$CRYPTOGRAPHY_VERSION"
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION' or m.version('hypothesis') != '$HYPOTHESIS_VERSION')" 2>/dev/null; then
    echo "Installing schemathesis $SCHEMATHESIS_VERSION (Python, for the API tests)..." >&2
    python3 -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION"
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('helm-python-sdk') != '$HELM_SDK_VERSION' or m.version('kubernetes-validate') != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
    echo "Installing helm-python-sdk $HELM_SDK_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION (Python, for the chart tests)..." >&2
    python3 -m pip install --quiet --disable-pip-version-check \
        "helm-python-sdk==$HELM_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# Installs a Debian package (through sudo when not root), refreshing the package lists only if
# the first try fails.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y --no-install-recommends "$1" >/dev/null \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends "$1" >/dev/null; }
}

if ! command -v node >/dev/null; then
    echo "Installing Node.js (Debian's nodejs package, for the JavaScript ed25519 verifier's test)..." >&2
    apt_install nodejs
fi

# The console's browser test runs Playwright, which needs Node.js 20 or newer (Debian 12's own
# nodejs is 18: take Node.js 20 from nodejs.org or NodeSource). Building the console needs 18.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "warning: Node.js $(node --version) builds the console, but its browser test needs Node.js 20 or newer" >&2
fi

if ! command -v npm >/dev/null; then
    echo "Installing npm (Debian's npm package, to build the web console)..." >&2
    apt_install npm
fi

if [ ! -x "${HOOKSTREAM_CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "Installing Chromium (Debian's chromium package, for the console's browser tests)..." >&2
    apt_install chromium
fi

if ! command -v promtool >/dev/null; then
    echo "Installing promtool (Debian's prometheus package, for the metrics and alert tests)..." >&2
    apt_install prometheus
fi
