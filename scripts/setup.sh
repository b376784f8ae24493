#!/usr/bin/env bash
# Make (or refresh) the development venv in .venv: the pinned runtime, mediapipe without its
# unused dependencies, maskgate itself (editable) and the test tools. Idempotent and quiet.
#   bash scripts/setup.sh && .venv/bin/maskgate demo
#   bash scripts/setup.sh && .venv/bin/python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.maskgate-setup
want=$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
echo "setting up .venv (first run downloads about 150 MB of wheels)..." >&2
# pygame: the demo's window (display.backend = "window"), tested on a real X server (Xvfb)
pip install -r requirements.txt "pytest>=8" "hypothesis>=6.100" "pygame==2.6.1"
pip install --no-deps mediapipe==0.10.18
pip install --no-deps --no-build-isolation -e . 2>/dev/null || pip install --no-deps -e .
echo "$want" > "$stamp"
