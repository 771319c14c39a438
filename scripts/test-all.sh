#!/usr/bin/env bash
# Runs every test seglog has, on a fresh machine too (cargo fetches what it needs):
# the workspace's unit and scenario tests in release mode, then the loom models in their own
# target directory, then a quick run of the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== workspace tests (release) =="
cargo test --workspace --release --locked

if [ -d loom-models/tests ] && ls loom-models/tests/*.rs >/dev/null 2>&1; then
  echo "== loom models =="
  bash scripts/loom.sh
fi

echo "== seglog bench --quick =="
cargo run --release --locked -p seglog-cli -- bench --quick
