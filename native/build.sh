#!/usr/bin/env bash
# Build the extension (release profile) into a wheel under native/target/wheels, and unpack it
# into native/target/site, a folder to put on PYTHONPATH (nothing is installed into any
# environment). PYTHON: the interpreter to build for (default: python3); MATURIN: the maturin
# command (default: maturin, else native/.venv/bin/maturin).
#   native/build.sh && PYTHONPATH=native/target/site:src:. python -m pytest tests/native
# To install it instead: pip install native/target/wheels/phoenix_resources_native-*.whl
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [[ -z "${MATURIN:-}" ]]; then
  if command -v maturin >/dev/null; then MATURIN=maturin; else MATURIN=.venv/bin/maturin; fi
fi
rm -rf target/wheels target/site
"$MATURIN" build --release --interpreter "$PYTHON" --out target/wheels
"$PYTHON" -m pip install --quiet --no-deps --no-index --target target/site target/wheels/phoenix_resources_native-*.whl
echo "built: $(ls target/wheels) -> native/target/site"
