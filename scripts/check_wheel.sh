#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv outside the checkout (no editable install) and run the
# main commands from it: `check`, `reasoner info`, `reasoner sample`, and a one-step `optimize` on a generated task.
# Catches what an editable install hides: missing subpackages, grammar, examples or shipped weights.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo"
python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install -q torch==2.13.0           # the CPU build, first, so the wheel's torch range is already met
pip install -q "$work"/dist/ruledsl-*.whl
cd "$work"                             # nothing from the checkout is importable from here
python - <<'PY'
import ruledsl, ruledsl.compiler, ruledsl.runtime, ruledsl.tasks, ruledsl.teacher
assert "site-packages" in ruledsl.__file__, ruledsl.__file__
PY
example="$(python -c 'from importlib.resources import files; print(files("ruledsl.examples") / "maze.rule")')"
ruledsl check "$example"
ruledsl reasoner info > card.md && head -n 3 card.md
ruledsl tasks generate maze --n 1 --split test --out data/maze
ruledsl reasoner sample data/maze/00000 --seed 0 --out sample.gif
status=0
ruledsl optimize "$example" --task data/maze/00000 --out run --steps 1 || status=$?
[ "$status" -le 1 ] || { echo "optimize failed with exit code $status"; exit 1; }
test -s run/report.json && test -s run/best.mp4
echo "wheel check: ok"
