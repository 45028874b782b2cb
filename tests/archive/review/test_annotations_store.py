"""AnnotationStore: versioned annotations per clip and reviewer, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, select

from archive.archive import Archive
from archive.errors import AnnotationError, StaleAnnotationError
from archive.index import migrations, schema
from archive.index.engine import create_index_engine
from archive.index.queries import Query
from archive.ingest import IngestOutcome, Origin
from archive.model import ClipEvent, NeedleView, ReviewStatus
from archive.phantom.to_annotation import annotation_from_truth
from archive.phantom.truth import GroundTruth
from archive.review import ClipAnnotation, NeedleMark, ReviewComment, TargetMark
from archive.review.sql import ANNOTATION_TABLES
from archive.review.store import ENV_REVIEWER, resolve_reviewer
from archive.settings import ArchiveSettings
from tests.archive.ingest_helpers import us_dataset, write_instance

FILE = Origin("file", path="test")
FRAMES, ROWS, COLS = 4, 12, 16


@pytest.fixture
def archive(tmp_path: Path, db_url: str) -> Iterator[Archive]:
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        yield opened


def _clip(archive: Archive, tmp_path: Path, seed: int = 0) -> str:
    """Ingest a small synthetic clip; return its SOP Instance UID."""
    ds = us_dataset(frames=FRAMES, rows=ROWS, columns=COLS, seed=seed)
    result = archive.ingest(write_instance(tmp_path / f"in{seed}", ds), origin=FILE)
    assert result.outcome is IngestOutcome.STORED, result.reason
    return str(ds.SOPInstanceUID)


def _draft(uid: str, reviewer: str, tip_col: float = 8.0) -> ClipAnnotation:
    needle = NeedleMark(((1.0, 1.0), (6.0, tip_col)), NeedleView.IN_PLANE)
    return ClipAnnotation.new(uid, reviewer, FRAMES, (ROWS, COLS)).with_needle(0, needle)


def test_round_trip_restores_every_layer(archive: Archive, sample_dir: Path) -> None:
    source = sample_dir / "c45_danger_mono.dcm"
    assert archive.ingest(source, origin=FILE).outcome is IngestOutcome.STORED
    truth = GroundTruth.read(source.with_suffix(".json"))
    original = (
        annotation_from_truth(truth, "alice")
        .with_adverse_event(16, "patient reported arm pain")
        .with_comment(ReviewComment("alice", "spread reaches the canal edge", 18))
        .with_status(ReviewStatus.SUBMITTED)
    )
    assert original.danger and original.spread and original.needle and original.events

    saved = archive.annotations.save(original, base_version=None)
    loaded = archive.annotations.load(truth.sop_instance_uid, "alice")

    assert (saved.version, saved.created, loaded.version) == (1, True, 1)
    assert loaded.status is ReviewStatus.SUBMITTED and loaded.saved_at == saved.saved_at
    restored = loaded.annotation
    assert restored == original
    assert restored.needle == original.needle and restored.target == original.target
    for frame, mask in original.spread.items():
        assert np.array_equal(restored.spread[frame], mask)
    for frame, by_class in original.danger.items():
        assert np.array_equal(restored.danger[frame][truth.danger_name], by_class[truth.danger_name])
    assert restored.events[ClipEvent.INJECTION_START] == truth.events["injection start"]
    assert restored.adverse_events == original.adverse_events
    assert restored.comments == original.comments
    assert restored.status is ReviewStatus.SUBMITTED


def test_each_save_is_a_new_version_and_history_is_kept(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    first = _draft(uid, "alice")
    second = first.with_target(2, TargetMark((5.0, 5.0), "C4/5 facet"))
    third = second.with_event(ClipEvent.NEEDLE_VISIBLE, 0)
    assert store.save(first, base_version=None).version == 1
    assert store.save(second, base_version=1).version == 2
    assert store.save(third, base_version=2).version == 3

    history = store.history(uid, "alice")
    assert [(v.version, v.parent_version, v.saved_by) for v in history] == [
        (1, None, "alice"),
        (2, 1, "alice"),
        (3, 2, "alice"),
    ]
    assert len({v.content_sha256 for v in history}) == 3
    assert store.load(uid, "alice").annotation == third
    assert store.load(uid, "alice", version=1).annotation == first
    assert store.load(uid, "alice", version=2).annotation == second
    with pytest.raises(AnnotationError, match="expected a version from 1 to 3, but got 7"):
        store.load(uid, "alice", version=7)


def test_two_reviewers_never_overwrite_each_other(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    alice, bob = _draft(uid, "alice", tip_col=8.0), _draft(uid, "bob", tip_col=12.0)
    assert store.save(alice, base_version=None).version == 1
    assert store.save(bob, base_version=None).version == 1
    assert store.save(bob.with_event(ClipEvent.NEEDLE_VISIBLE, 1), base_version=1).version == 2

    assert store.reviewers(uid) == ["alice", "bob"]
    assert store.load(uid, "alice").annotation == alice
    assert store.load(uid, "alice").version == 1
    assert store.load(uid, "bob").annotation.tip_at(0) == (6.0, 12.0)
    with pytest.raises(AnnotationError, match="reviewers with annotations: alice, bob"):
        store.load(uid, "carol")


def test_stale_save_is_refused_and_nothing_is_lost(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    store.save(_draft(uid, "alice"), base_version=None)
    # Two editors of alice's annotation both load version 1.
    in_editor_a = store.load(uid, "alice")
    in_editor_b = store.load(uid, "alice")
    edited_b = in_editor_b.annotation.with_event(ClipEvent.NEEDLE_VISIBLE, 0)
    assert store.save(edited_b, base_version=in_editor_b.version).version == 2

    edited_a = in_editor_a.annotation.with_target(3, TargetMark((4.0, 9.0), "L5 SAP-TP junction"))
    with pytest.raises(StaleAnnotationError) as refused:
        store.save(edited_a, base_version=in_editor_a.version)
    message = str(refused.value)
    assert "'alice'" in message and uid in message
    assert "based on version 1" in message and "version 2 is now stored" in message
    assert "reload" in message and "nothing was saved" in message
    assert (refused.value.base_version, refused.value.stored_version) == (1, 2)
    assert [v.version for v in store.history(uid, "alice")] == [1, 2]
    assert store.load(uid, "alice").annotation == edited_b

    # The refused edit is still held by the caller: re-apply it on top of version 2.
    latest = store.load(uid, "alice")
    merged = latest.annotation.with_target(3, edited_a.target[3])
    saved = store.save(merged, base_version=latest.version)
    assert saved.version == 3
    reloaded = store.load(uid, "alice").annotation
    assert reloaded.target[3] == edited_a.target[3] and reloaded.events[ClipEvent.NEEDLE_VISIBLE] == 0

    with pytest.raises(StaleAnnotationError, match="based on no saved version"):
        store.save(_draft(uid, "alice", tip_col=3.0), base_version=None)


def test_identical_resave_writes_no_version(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    draft = _draft(uid, "alice")
    first = store.save(draft, base_version=None)
    again = store.save(_draft(uid, "alice"), base_version=1)
    assert (again.version, again.created, again.content_sha256) == (1, False, first.content_sha256)
    # identical to the latest is never stale: nothing could be lost
    assert store.save(draft, base_version=None).created is False
    assert len(store.history(uid, "alice")) == 1


def test_concurrent_saves_on_one_base_store_exactly_one(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    store.save(_draft(uid, "alice"), base_version=None)
    outcomes: list[str] = []
    lock = threading.Lock()

    def edit(col: float) -> None:
        try:
            store.save(_draft(uid, "alice", tip_col=col), base_version=1)
            result = "saved"
        except StaleAnnotationError:
            result = "stale"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=edit, args=(float(c),)) for c in (2, 3, 4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["saved", "stale", "stale", "stale"]
    assert [v.version for v in store.history(uid, "alice")] == [1, 2]


def test_status_transitions_and_comments(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    store.save(_draft(uid, "alice"), base_version=None)
    # to the present status without a comment: nothing happens
    assert store.set_status(uid, "alice", "draft", by="alice") is ReviewStatus.DRAFT
    assert len(store.history(uid, "alice")) == 1

    with pytest.raises(AnnotationError, match="cannot go from 'draft' to 'approved'"):
        store.set_status(uid, "alice", "approved", by="carol")
    assert store.set_status(uid, "alice", "submitted", by="alice") is ReviewStatus.SUBMITTED
    with pytest.raises(AnnotationError, match="expected a comment"):
        store.set_status(uid, "alice", ReviewStatus.NEEDS_REWORK, by="carol")
    assert (
        store.set_status(uid, "alice", "needs-rework", by="carol", comment="tip not marked on frame 3")
        is ReviewStatus.NEEDS_REWORK
    )

    loaded = store.load(uid, "alice")
    assert loaded.status is ReviewStatus.NEEDS_REWORK and loaded.version == 3
    assert loaded.annotation.status is ReviewStatus.NEEDS_REWORK
    assert loaded.annotation.comments == (ReviewComment("carol", "tip not marked on frame 3"),)
    assert [(v.version, v.status, v.saved_by) for v in store.history(uid, "alice")] == [
        (1, ReviewStatus.DRAFT, "alice"),
        (2, ReviewStatus.SUBMITTED, "alice"),
        (3, ReviewStatus.NEEDS_REWORK, "carol"),
    ]
    comments = store.comments(uid, "alice")
    assert [(c.author, c.status_from, c.status_to, c.text, c.version) for c in comments] == [
        ("alice", ReviewStatus.DRAFT, ReviewStatus.SUBMITTED, None, 2),
        ("carol", ReviewStatus.SUBMITTED, ReviewStatus.NEEDS_REWORK, "tip not marked on frame 3", 3),
    ]

    # rework, then hand in again by saving with the new status
    reworked = loaded.annotation.with_needle(3, NeedleMark(((1.0, 1.0), (7.0, 9.0)), NeedleView.IN_PLANE))
    assert store.save(reworked.with_status("submitted"), base_version=3).version == 4
    assert store.comments(uid, "alice")[-1].status_to is ReviewStatus.SUBMITTED
    assert store.set_status(uid, "alice", "approved", by="carol") is ReviewStatus.APPROVED
    # the approval made a version: an editor still on version 4 is stale
    with pytest.raises(StaleAnnotationError):
        store.save(reworked.with_status("submitted"), base_version=4)


def test_four_eyes_refuses_self_approval_by_default(archive: Archive, tmp_path: Path, db_url: str) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    store.save(_draft(uid, "alice"), base_version=None)
    store.set_status(uid, "alice", "submitted", by="alice")
    with pytest.raises(
        AnnotationError, match=r"approver other than the reviewer.*'Alice '.*four_eyes = false"
    ):
        store.set_status(uid, "alice", "approved", by="Alice ")
    assert store.load(uid, "alice").status is ReviewStatus.SUBMITTED, "nothing was changed"
    assert len(store.history(uid, "alice")) == 2
    # Sending one's own work back is not an approval.
    assert store.set_status(uid, "alice", "draft", by="alice") is ReviewStatus.DRAFT
    store.set_status(uid, "alice", "submitted", by="alice")

    settings = ArchiveSettings(tmp_path / "data", db_url, four_eyes=False)
    with Archive.open(settings) as single:
        assert single.annotations.set_status(uid, "alice", "approved", by="alice") is ReviewStatus.APPROVED


def test_marks_cannot_change_while_submitted(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    draft = _draft(uid, "alice")
    store.save(draft.with_status("submitted"), base_version=None)
    # ClipAnnotation refuses such an edit; JSON from elsewhere (import-json) can still carry one
    edited = dataclasses.replace(draft.with_event(ClipEvent.NEEDLE_VISIBLE, 0), status=ReviewStatus.SUBMITTED)
    with pytest.raises(AnnotationError, match="marks cannot change while the annotation is 'submitted'"):
        store.save(edited, base_version=1)
    # a comment alone is not a change of marks
    commented = draft.with_status("submitted").with_comment(ReviewComment("alice", "frame 2 is blurred"))
    assert store.save(commented, base_version=1).version == 2


def test_refuses_unknown_clip_and_wrong_size(archive: Archive, tmp_path: Path) -> None:
    uid = _clip(archive, tmp_path)
    store = archive.annotations
    with pytest.raises(
        AnnotationError, match=r"no instance with SOP Instance UID 1\.2\.3\.4.*usarchive import"
    ):
        store.save(_draft("1.2.3.4", "alice"), base_version=None)
    with pytest.raises(AnnotationError, match="no instance"):
        store.history("1.2.3.4", "alice")
    wrong = ClipAnnotation.new(uid, "alice", FRAMES, (ROWS + 1, COLS))
    with pytest.raises(AnnotationError, match=f"expected {FRAMES} frame\\(s\\) of {ROWS} x {COLS}"):
        store.save(wrong, base_version=None)
    assert store.reviewers(uid) == []


def test_list_reviews_and_find_filter_by_status_and_reviewer(archive: Archive, tmp_path: Path) -> None:
    one, two, three = (_clip(archive, tmp_path, seed) for seed in (1, 2, 3))
    store = archive.annotations
    store.save(_draft(one, "alice"), base_version=None)
    store.save(_draft(one, "bob"), base_version=None)
    store.save(_draft(two, "alice").with_status("submitted"), base_version=None)

    def reviews(**filters: object) -> set[tuple[str, str]]:
        return {(r.sop_instance_uid, r.reviewer) for r in store.list_reviews(**filters)}  # type: ignore[arg-type]

    assert reviews() == {(one, "alice"), (one, "bob"), (two, "alice")}
    assert reviews(status="submitted") == {(two, "alice")}
    assert reviews(reviewer="bob") == {(one, "bob")}
    assert reviews(status=ReviewStatus.DRAFT, reviewer="alice") == {(one, "alice")}
    assert reviews(status="approved") == set()

    def found(**filters: object) -> set[str]:
        return {row.sop_instance_uid for row in archive.index.find(Query(**filters))}  # type: ignore[arg-type]

    assert found() == {one, two, three}
    assert found(review_status=ReviewStatus.DRAFT) == {one}
    assert found(review_status=ReviewStatus.SUBMITTED) == {two}
    assert found(reviewer="alice") == {one, two}
    assert found(reviewer="bob") == {one}
    assert found(reviewer="bob", review_status=ReviewStatus.SUBMITTED) == set()
    assert found(reviewer="alice", review_status=ReviewStatus.SUBMITTED) == {two}


def _tables(url: str) -> set[str]:
    engine = create_index_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_fresh_index_migrates_to_version_2(db_url: str) -> None:
    engine = create_index_engine(db_url)
    try:
        assert migrations.migrate(engine) == migrations.LATEST_VERSION >= 2
        with engine.connect() as connection:
            versions = connection.execute(select(schema.schema_version.c.version)).scalars().all()
        assert sorted(versions) == [version for version, _, _ in migrations.MIGRATIONS]
    finally:
        engine.dispose()
    assert {t.name for t in ANNOTATION_TABLES} <= _tables(db_url)


def test_index_at_version_1_upgrades_with_annotation_tables(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_index_engine(db_url)
    try:
        monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        migrations.migrate(engine)
        monkeypatch.undo()
        with engine.connect() as connection:
            assert migrations.current_version(connection) == 1
        assert not {t.name for t in ANNOTATION_TABLES} & _tables(db_url)
    finally:
        engine.dispose()
    with Archive.open(ArchiveSettings(tmp_path / "data", db_url)) as opened:
        with opened.engine.connect() as connection:
            assert migrations.current_version(connection) == migrations.LATEST_VERSION
        uid = _clip(opened, tmp_path)
        assert opened.annotations.save(_draft(uid, "alice"), base_version=None).version == 1
    assert {t.name for t in ANNOTATION_TABLES} <= _tables(db_url)


def test_resolve_reviewer_reads_the_settings_never_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_REVIEWER, "dana")
    plain = ArchiveSettings(tmp_path)
    assert resolve_reviewer(plain) is None  # library code does not read USARCHIVE_REVIEWER
    assert resolve_reviewer(ArchiveSettings(tmp_path, reviewer=" erin ")) == "erin"
    assert resolve_reviewer(ArchiveSettings(tmp_path, reviewer="  ")) is None
