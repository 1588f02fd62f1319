#!/usr/bin/env bash
# Installs the tools a local run and the tests need, once: they are cached in ~/.cargo/bin.
#   tansu: a Kafka-protocol broker (Rust), pinned; it stands in for Kafka on one machine.
set -euo pipefail

TANSU_VERSION=0.6.0
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

if "$cargo_bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    exit 0
fi
echo "Installing tansu $TANSU_VERSION (a Kafka-protocol broker; about 8 minutes, once)..." >&2
cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql
