#!/usr/bin/env bash
# Builds the web console into console/dist (the ingest API serves it at /console when
# HOOKSTREAM_CONSOLE_DIR names that folder). Its packages come from the npm registry at the
# versions console/package-lock.json pins (`npm ci`, cached in ~/.npm); it rebuilds only when
# a source, the lockfile or the build script is newer than the built page.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/console"
command -v npm >/dev/null || { echo "the console needs npm: run \`make tools\`" >&2; exit 1; }

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "Installing the console's packages (npm ci)..." >&2
    npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -f dist/index.html ] || [ -n "$(find src build.mjs package-lock.json -newer dist/index.html -print -quit)" ]; then
    echo "Building the console..." >&2
    npm run --silent build
fi
