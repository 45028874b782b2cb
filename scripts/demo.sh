#!/usr/bin/env bash
# The main job of `make run`, on the embedded default (SQLite + local files):
# capture → archive → review → audit → research export, with real components.
#
#   1. the sample clips (generated when missing);
#   2. capture: `usarchive serve` receives them from dcmtk's storescu, then the
#      archive's index of what arrived is printed;
#   3. worklist: two procedures are scheduled (`usarchive worklist add`), the
#      scanner stand-in makes a clip for each carrying the entry (as a scanner
#      that picked it from the Modality Worklist does) and sends it to `serve`;
#      the archive indexes level, side and technique with source `worklist:<entry>`;
#   4. review: each sample's ground truth is saved as a reviewer's annotation
#      and approved (what an expert does in `make review`);
#   5. a synthetic cohort (TT vs OT) with its clinical outcomes is imported, and
#      `usarchive audit` writes an HTML report;
#   6. a de-identified research dataset (HDF5) is exported.
#
# USARCHIVE_HOME (set by the Makefile to .demo/) is the archive; it is made anew.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
: "${USARCHIVE_HOME:?set USARCHIVE_HOME to the demo data directory}"
OUT="$USARCHIVE_HOME-out"
export USARCHIVE_REVIEWER=demo-reviewer
# A fixed, public demo key: real sites put their own secret in the configuration.
export USARCHIVE_DEID_SECRET=usarchive-demo-secret-not-for-real-data

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$USARCHIVE_HOME" "$OUT"
mkdir -p "$OUT"
"$BIN/usarchive" init "$USARCHIVE_HOME"

if ! compgen -G "sample_dicom/*.dcm" >/dev/null; then
  say "Generating the sample clips into sample_dicom/"
  "$BIN/usarchive" sample samples sample_dicom
fi

say "Capture: the scanner (dcmtk storescu, or pynetdicom without dcmtk) sends sample_dicom/ to usarchive serve"
"$BIN/python" -m pacs_bridge.demo sample_dicom

say "Worklist: two procedures scheduled, then captured carrying their entries"
today=$(date +%F)
schedule() {  # patient-id name accession time levels side technique → the entry's number
  "$BIN/usarchive" --json worklist add --patient-id "$1" --patient-name "$2" --accession "$3" \
    --date "$today" --time "$4" --station-aet USDEMO --procedure "medial branch block" \
    --levels "$5" --side "$6" --technique "$7" | "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["entry"])'
}
entry_ot=$(schedule DEMO-W1 "WANG^LI" WL0001 09:00 L4,L5 right OT)
entry_tt=$(schedule DEMO-W2 "SATO^HANAKO" WL0002 10:30 L5 left TT)
"$BIN/usarchive" worklist list
# the scanner's free text says L3 / TT; the worklist entry wins (and `show` keeps both)
"$BIN/usarchive" sample generate "$OUT/worklist" --worklist "$entry_ot" --seed 11 --level L3 --technique TT >/dev/null
"$BIN/usarchive" sample generate "$OUT/worklist" --worklist "$entry_tt" --seed 12 --level L3 --technique TT >/dev/null
"$BIN/python" -m pacs_bridge.demo "$OUT/worklist" >/dev/null
"$BIN/usarchive" find --accession WL0001
"$BIN/usarchive" find --accession WL0002

say "Review: each sample's ground truth saved as $USARCHIVE_REVIEWER's annotation, then approved"
approve_truths() {
  # ground truth JSON files → the reviewer's annotations, submitted, then approved
  local uids
  "$BIN/usarchive" review import-json --from-phantom-truth --reviewer "$USARCHIVE_REVIEWER" "$@" >/dev/null
  mapfile -t uids < <("$BIN/python" -c 'import json,sys; [print(json.load(open(p))["sop_instance_uid"]) for p in sys.argv[1:]]' "$@")
  "$BIN/usarchive" review status --reviewer "$USARCHIVE_REVIEWER" --set submitted "${uids[@]}" >/dev/null
  "$BIN/usarchive" review status --reviewer "$USARCHIVE_REVIEWER" --set approved --by demo-approver "${uids[@]}" >/dev/null
}
approve_truths sample_dicom/*.json
"$BIN/usarchive" review list

say "Audit: a synthetic cohort of 24 patients (TT vs OT) with outcomes"
"$BIN/usarchive" sample generate "$OUT/cohort" --cohort 24 --seed 7 >/dev/null
"$BIN/usarchive" import "$OUT/cohort" | tail -n 1
mapfile -t truths < <(find "$OUT/cohort" -name '*.json' ! -name manifest.json | sort)
approve_truths "${truths[@]}"
"$BIN/usarchive" outcome import "$OUT/cohort/outcomes.csv"
"$BIN/usarchive" audit --html "$OUT/audit.html" --csv "$OUT/audit.csv"

say "Research export: de-identified HDF5 dataset of the approved clips"
"$BIN/usarchive" export --format hdf5 "$OUT/research.h5"

say "Done"
echo "archive:         $USARCHIVE_HOME"
echo "audit report:    $OUT/audit.html"
echo "research data:   $OUT/research.h5 (card: $OUT/research.card.md)"
echo "review a clip:   make review"
