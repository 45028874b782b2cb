"""Eight processes import into one archive at once: all stored, no lock errors, one winner per UID."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pydicom
import pytest
from ingest_helpers import part10_bytes, us_dataset, write_instance

from archive.archive import Archive
from archive.settings import ArchiveSettings
from archive.verify import verify

CHILD = Path(__file__).with_name("ingest_child.py")
PROCESSES = 8


@pytest.mark.slow
def test_eight_processes_import_at_once(tmp_path: Path, db_url: str) -> None:
    data_dir = tmp_path / "data"
    go = tmp_path / "go"
    shared_study = us_dataset().StudyInstanceUID
    # the same instance offered by every process (identical bytes) ...
    same = write_instance(tmp_path / "same", us_dataset(study_uid=shared_study, seed=99))
    # ... and one SOP Instance UID with different bytes in each process
    contested_uid = "1.2.826.0.1.3680043.8.498.777"
    batches: list[list[Path]] = []
    for worker in range(PROCESSES):
        own = [
            write_instance(tmp_path / f"w{worker}", us_dataset(study_uid=shared_study, seed=worker * 100 + i))
            for i in range(12)
        ]
        contested = tmp_path / f"w{worker}" / "contested.dcm"
        contested.write_bytes(part10_bytes(us_dataset(sop_uid=contested_uid, seed=1000 + worker)))
        batches.append([same, *own[:6], contested, *own[6:]])
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                str(data_dir),
                db_url,
                "--go",
                str(go),
                "--group",
                "5" if worker % 2 else "1",  # half the processes use group commit
                *map(str, batch),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker, batch in enumerate(batches)
    ]
    # open the archive (and migrate) concurrently too; release all at once when every child is ready
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
    go.touch()
    outcomes: dict[str, list[str]] = defaultdict(list)
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
        assert "locked" not in err.lower() and "storage-error" not in out, err
        for line in out.splitlines():
            outcome, code, uid, _path = line.split(" ", 3)
            outcomes[uid].append(f"{outcome}/{code}")
    assert Counter(outcomes[contested_uid]) == {"stored/-": 1, "rejected/conflict": PROCESSES - 1}
    same_uid = str(pydicom.dcmread(same, stop_before_pixels=True).SOPInstanceUID)
    assert Counter(outcomes[same_uid]) == {"stored/-": 1, "duplicate/-": PROCESSES - 1}
    own_uids = set(outcomes) - {contested_uid, same_uid}
    assert len(own_uids) == PROCESSES * 12
    assert all(outcomes[uid] == ["stored/-"] for uid in own_uids)
    with Archive.open(ArchiveSettings(data_dir, db_url)) as archive:
        report = verify(archive)
        assert report.ok and report.checked == PROCESSES * 12 + 2
        assert archive.index.stats()["studies"] == 2
