#!/usr/bin/env bash
# Runs seglog's loom models and their broken twins (loom-models/tests/*.rs), in a target
# directory of their own so the loom cfg never mixes with normal builds. See docs/loom.md.
#
#   scripts/loom.sh                          # every model and twin, preemption bound 2
#   LOOM_MAX_PREEMPTIONS=3 scripts/loom.sh   # a deeper search
#   scripts/loom.sh three_writers            # only tests whose name contains a filter
set -euo pipefail
cd "$(dirname "$0")/.."

# seglog_loom switches the engine's atomics and cells to loom; crossbeam_loom does the same for
# crossbeam-epoch. Debug assertions stay on in the optimized build: the engine's invariants are
# checked in every explored execution.
export RUSTFLAGS="--cfg seglog_loom --cfg crossbeam_loom"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"

start=$SECONDS
report() {
  echo "loom: $((SECONDS - start)) s (build included), preemption bound $LOOM_MAX_PREEMPTIONS"
}
trap report EXIT

cargo test --release --locked -p seglog-loom-models --target-dir target-loom \
  -- --test-threads=2 "$@"
