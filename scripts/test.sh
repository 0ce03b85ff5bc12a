#!/usr/bin/env bash
# The whole test suite: what the README tells a newcomer to run and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# Plugins are WebAssembly components; the gateway's tests build them from plugins/.
rustup target add wasm32-wasip2
# Real servers and a real browser: nats-server, chromium and the rest, installed when missing.
./scripts/deps.sh
# Gateway: unit, property and end-to-end tests (builds the test plugins first).
# Tests assert events, never stopwatches: time bounds are measured and
# reported by weir-bench (BENCHMARKS.md), not asserted here.
cargo test --workspace --locked
# The benchmark harness in quick mode against the debug binary the tests
# built: only to keep every scenario working (its figures mean nothing here).
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir/weir-bench"
cargo run --locked -q -p weir-bench -- all --quick --weir "$target_dir/debug/weir" \
  --json "$target_dir/weir-bench/ci-quick.json" > "$target_dir/weir-bench/ci-quick.txt"
echo "weir-bench quick mode: every scenario ran (report in $target_dir/weir-bench/ci-quick.txt)"
# Plugin SDK: its pure helpers (HMAC, signature parsing) run on the host.
cargo test --locked --manifest-path plugins/Cargo.toml -p weir-plugin-sdk
# The JavaScript and Python plugin SDKs on the host: every shared signature
# vector, crypto against the platform's own, JSON as serde_json writes it.
npm test --prefix plugins/js
plugins/python/.venv/bin/python -m unittest discover -s plugins/python/tests
