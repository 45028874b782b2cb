#!/usr/bin/env bash
# `make bench`: every benchmark, then BENCHMARKS.md assembled from their results.
# A benchmark that misses a target exits non-zero; the others still run, the
# results are still collected, and the exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

# Orthanc (and its DICOMweb plugin) are peers of the receive, forward, retrieve and web benchmarks.
if ! command -v Orthanc >/dev/null 2>&1 || [ ! -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null
  else
    echo "the receive and web benchmarks compare with Orthanc: sudo apt-get install -y orthanc orthanc-dicomweb" >&2
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
run forward $PY -m benchmarks.bench_forward
run qr_move $PY -m benchmarks.bench_qr_move
run export $PY benchmarks/bench_export.py
run web $PY -m benchmarks.bench_web
run soak $PY -m benchmarks.bench_soak --rounds 40 --minutes 30
run proposals $PY -m benchmarks.bench_proposals
run annotator env QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $PY benchmarks/bench_annotator.py
$PY -m benchmarks.collect

if [ ${#failed[@]} -gt 0 ]; then
  echo "benchmarks that missed a target or failed: ${failed[*]} (see BENCHMARKS.md)"
  exit 1
fi
