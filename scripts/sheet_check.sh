#!/usr/bin/env bash
# Annotates a split with a run that has the attention head and checks the HTML sheet in headless
# Chromium (scripts/sheet_check.mjs): maps drawn at load, switched by hover and click, words
# coloured by the truth. Screenshots land in OUT.
#
#   scripts/sheet_check.sh RUN SPLIT [OUT]
#   e.g. cargo run --release --example quickstart -- --head attention --out runs/attention
#        scripts/sheet_check.sh runs/attention datasets/Synthetic/test.json
#
# Needs Debian's chromium (apt-get install chromium) and npm; playwright-core is installed in a
# cache folder, outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="$1"
SPLIT="$2"
OUT="${3:-target/sheet-check}"
TOOLS="${HOME:-/tmp}/.cache/aia-sheet-check"

mkdir -p "$OUT" "$TOOLS"
if [ ! -d "$TOOLS/node_modules/playwright-core" ]; then
    npm install --prefix "$TOOLS" --silent --no-audit --no-fund playwright-core >/dev/null
fi
cargo run --release --quiet --example annotate -- --run "$RUN" --split "$SPLIT" --out "$OUT"
cp scripts/sheet_check.mjs "$TOOLS/"
node "$TOOLS/sheet_check.mjs" "$OUT/annotations.html" "$OUT"
