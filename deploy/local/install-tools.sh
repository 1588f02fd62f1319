#!/usr/bin/env bash
# Installs the tools a local run and the tests need, once: they are cached in ~/.cargo/bin.
#   tansu: a Kafka-protocol broker (Rust), pinned; it stands in for Kafka on one machine.
#   standardwebhooks (PyPI), pinned: a signature verifier nobody here wrote, for the tests.
#   schemathesis (PyPI), pinned with its hypothesis: property-based tests of the API, driven by
#   its OpenAPI document.
#   promtool (Debian's prometheus package): checks the metrics and the alert rules.
#   helm-python-sdk (PyPI, the Helm v4 engine) and kubernetes-validate (PyPI, the Kubernetes
#   schemas), pinned: render, lint and validate the Helm chart.
set -euo pipefail

TANSU_VERSION=0.6.0
STANDARDWEBHOOKS_VERSION=1.1.0
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.15
HELM_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

if ! "$cargo_bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "Installing tansu $TANSU_VERSION (a Kafka-protocol broker; about 8 minutes, once)..." >&2
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
fi

if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('standardwebhooks') != '$STANDARDWEBHOOKS_VERSION')" 2>/dev/null; then
    echo "Installing standardwebhooks $STANDARDWEBHOOKS_VERSION (Python, for the tests)..." >&2
    python3 -m pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
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

if ! command -v promtool >/dev/null; then
    echo "Installing promtool (Debian's prometheus package, for the metrics and alert tests)..." >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get install -y --no-install-recommends prometheus >/dev/null \
        || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends prometheus >/dev/null; }
fi
