"""docs/deploy.md's backup and restore, run as written: index first, then the store; restore; verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import pg

from archive.archive import Archive
from archive.ingest import Origin
from archive.phantom.to_annotation import annotation_from_truth
from archive.phantom.truth import GroundTruth
from archive.settings import ArchiveSettings

USARCHIVE = str(Path(sys.executable).with_name("usarchive"))


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result


def _usarchive(data: Path, db: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    root = [USARCHIVE, "--data-dir", str(data), *(["--db", db] if db else [])]
    return subprocess.run([*root, *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(
    shutil.which("sqlite3") is None or shutil.which("tar") is None, reason="needs sqlite3, tar"
)
def test_backup_and_restore_as_documented(
    tmp_path: Path, db_url: str, sample_dir: Path, request: pytest.FixtureRequest
) -> None:
    postgres = db_url.startswith("postgresql")
    db = db_url if postgres else None
    live, backup, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    backup.mkdir()
    assert _usarchive(live, db, "init").returncode == 0
    clips = sorted(sample_dir.glob("*.dcm"))[:3]
    truth = GroundTruth.read(clips[0].with_suffix(".json"))
    with Archive.open(ArchiveSettings(live, db), create=False) as archive:
        for clip in clips:
            archive.ingest(clip, origin=Origin("file"))
        archive.annotations.save(annotation_from_truth(truth, reviewer="alice"), base_version=None)

    # backup: the index first, then the store (docs/deploy.md, section 4)
    if postgres:
        _sh(pg._pg_bin("pg_dump"), "-Fc", "-f", str(backup / "index.dump"), db_url)
    else:
        _sh("sqlite3", str(live / "index.sqlite"), f".backup '{backup / 'index.sqlite'}'")
    _sh("tar", "-C", str(live), "-cf", str(backup / "store.tar"), "store", "usarchive.toml")

    # restore into an empty data directory (and an empty database)
    restored.mkdir()
    _sh("tar", "-C", str(restored), "-xf", str(backup / "store.tar"))
    target_db = None
    admin = request.getfixturevalue("pg_url") if postgres else ""
    with pg.fresh_database(admin) if postgres else _Nothing() as target:
        if target is not None:
            target_db = target
            _sh(pg._pg_bin("pg_restore"), "--no-owner", "-d", target, str(backup / "index.dump"))
        else:
            shutil.copy(backup / "index.sqlite", restored / "index.sqlite")
        verified = _usarchive(restored, target_db, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        found = json.loads(_usarchive(restored, target_db, "--json", "find").stdout)
        assert len(found) == len(clips)
        reviews = json.loads(_usarchive(restored, target_db, "--json", "review", "list").stdout)
        assert [(r["sop_instance_uid"], r["reviewer"]) for r in reviews] == [
            (truth.sop_instance_uid, "alice")
        ]
        assert _usarchive(restored, target_db, "show", truth.sop_instance_uid).returncode == 0


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
