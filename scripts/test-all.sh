#!/usr/bin/env bash
# Runs every test seglog has, on a fresh machine too (cargo fetches what it needs):
# the workspace's unit and scenario tests in release mode, the warm-tier suite twice more
# (three runs in all), the benchmarks in test mode, the loom models in their own target
# directory, then a quick run of the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

echo "== workspace tests (release) =="
cargo test --workspace --release --locked

for run in 2 3; do
  echo "== warm-tier suite, run $run of 3 =="
  cargo test --release --locked -p seglog-tests --test 'seed_*' --test 'warm_tier_*'
done

echo "== benchmarks in test mode =="
cargo test --release --locked -p seglog-benches --benches

echo "== loom models =="
bash scripts/loom.sh

echo "== seglog bench --quick =="
cargo run --release --locked -p seglog-cli -- bench --quick

echo "all tests passed in $((SECONDS - start)) s"
