#!/usr/bin/env bash
# The service binaries of the release before this one, for the rolling-upgrade test
# (tests/e2e/tests/rolling_upgrade.rs): it starts a pipeline on them and replaces each service,
# one at a time under load, with this build's.
#
# The release is a commit of this repository's history (PREVIOUS_RELEASE below; move it when a
# release is cut). Its source is taken with `git archive` and built in the shared target folder,
# so the dependencies it shares with this checkout are not compiled again. Cargo names a
# workspace crate's build by its name, version and dependencies, not by where its source is, so
# the release's crates would take the place of this checkout's where those match (and a stale
# build would look fresh): the release is built with its workspace version marked
# `-previous`, which gives each of its crates builds of their own. Its binaries are copied to
# <target>/previous-release/bin, and this checkout's are built again, since the release's build
# passed through <target>/debug. A second run with the same commit does nothing.
set -euo pipefail

# 2026-12-05, before issue 24 (one configuration file, the management listener, key rotation,
# operational events, the retry-tier agreement) and issue 22's endpoint health (a store
# migration): an upgrade across all of them.
PREVIOUS_RELEASE=3932ad42b6804494b203f3628ccc4e14ee74fa65

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
CARGO=${CARGO:-cargo}
target="${CARGO_TARGET_DIR:-$root/target}"
out="$target/previous-release"
services=(hookstream-ingest hookstream-dispatcher hookstream-retry-tier hookstream-replay)

if [ "$(cat "$out/bin/release" 2>/dev/null)" = "$PREVIOUS_RELEASE" ]; then
    exit 0
fi

# A shallow clone lacks the commit: fetch it from where this clone came from.
if ! git cat-file -e "$PREVIOUS_RELEASE^{commit}" 2>/dev/null; then
    depth=()
    if [ "$(git rev-parse --is-shallow-repository 2>/dev/null)" = true ]; then
        depth=(--depth 1)
    fi
    git fetch --quiet "${depth[@]}" origin "$PREVIOUS_RELEASE" || {
        echo "error: the previous release $PREVIOUS_RELEASE is not in this clone's history and could not be fetched from origin" >&2
        exit 1
    }
fi

echo "Building the previous release (${PREVIOUS_RELEASE:0:12}) for the rolling-upgrade test..."
rm -rf "$out"
mkdir -p "$out/src" "$out/bin"
git archive "$PREVIOUS_RELEASE" | tar -x -C "$out/src"
# Its workspace version, and the lock file's entries for its own packages, marked `-previous`.
python3 - "$out/src" <<'EOF'
import pathlib, re, sys
src = pathlib.Path(sys.argv[1])
manifest = src / "Cargo.toml"
text = manifest.read_text()
section = re.search(r"^\[workspace\.package\]\n(?:(?!\[).*\n)*", text, re.M)
if not section or not re.search(r'^version = "[^"]+"$', section.group(0), re.M):
    sys.exit("previous-release: no [workspace.package] version in the release's Cargo.toml")
marked = re.sub(r'^(version = ")([^"]+)(")$', r"\1\2-previous\3", section.group(0), count=1, flags=re.M)
manifest.write_text(text.replace(section.group(0), marked))
lock = src / "Cargo.lock"
lock.write_text(re.sub(r'(name = "hookstream-[^"]+"\nversion = ")([^"]+)(")', r"\1\2-previous\3", lock.read_text()))
EOF
(cd "$out/src" && CARGO_TARGET_DIR="$target" $CARGO build --locked --workspace --bins)
for service in "${services[@]}"; do
    cp "$target/debug/$service" "$out/bin/$service"
done
# The source is not needed any more (and would be a second workspace under the target folder).
rm -rf "$out/src"
# This checkout's binaries back in <target>/debug.
$CARGO build --workspace --bins --quiet
echo "$PREVIOUS_RELEASE" > "$out/bin/release"
