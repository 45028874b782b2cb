#!/usr/bin/env bash
# Fetch the OHIF viewer (npm @ohif/app, version and sha512 pinned in archive/web/ohif_pin.json),
# verify it, and install its prebuilt dist/ into the cache (${USARCHIVE_OHIF_CACHE:-$XDG_CACHE_HOME/usarchive/ohif}).
# Does nothing when the pinned version is already installed. Needs npm (scripts/system-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" -m archive.web.ohif_install "$@"
