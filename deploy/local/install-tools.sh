#!/usr/bin/env bash
# Installs the tools a local run and the tests need, once: they are cached in ~/.cargo/bin.
#   tansu: a Kafka-protocol broker (Rust), pinned; it stands in for Kafka on one machine.
#   standardwebhooks (PyPI), pinned: a signature verifier nobody here wrote, for the tests.
#   schemathesis (PyPI), pinned with its hypothesis: property-based tests of the API, driven by
#   its OpenAPI document.
set -euo pipefail

TANSU_VERSION=0.6.0
STANDARDWEBHOOKS_VERSION=1.1.0
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.15
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
