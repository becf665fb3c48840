#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, integration and
# generated tests, and each benchmark once in test mode. Needs only Rust;
# anything else a test needs is started here and stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets
