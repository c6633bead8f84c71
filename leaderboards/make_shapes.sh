#!/bin/sh
# Regenerate leaderboards/shapes.md (see make_shapes.py). Extra arguments pass through,
# e.g. `leaderboards/make_shapes.sh --model osprey-tiny` once that model exists.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" leaderboards/make_shapes.py "$@"
