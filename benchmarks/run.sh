#!/usr/bin/env bash
# `make bench`: every benchmark, then BENCHMARKS.md assembled from their results.
# A benchmark that misses a target exits non-zero; the others still run, the
# results are still collected, and the exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# Orthanc is a peer of the receive benchmark only (not needed by the tests).
if ! command -v Orthanc >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc >/dev/null
  else
    echo "the receive benchmark compares with Orthanc: sudo apt-get install -y orthanc" >&2
  fi
fi

failed=()
run() {
  local name=$1; shift
  echo "== $name: $*"
  if ! "$@"; then failed+=("$name"); fi
}

run find $PY -m benchmarks.bench_find
run qr_find $PY -m benchmarks.bench_qr_find
run import $PY -m benchmarks.bench_archive_import
run receive $PY -m benchmarks.bench_receive
run export $PY benchmarks/bench_export.py
run soak $PY -m benchmarks.bench_soak --rounds 40 --minutes 30
run annotator env QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $PY benchmarks/bench_annotator.py
$PY -m benchmarks.collect

if [ ${#failed[@]} -gt 0 ]; then
  echo "benchmarks that missed a target or failed: ${failed[*]} (see BENCHMARKS.md)"
  exit 1
fi
