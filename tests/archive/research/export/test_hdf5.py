"""Research HDF5 dataset: writer and reader round trip, atomicity, split, pixel cleaning."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import numpy.typing as npt
import pytest
from hdf5_cases import (
    CARD,
    H,
    T,
    W,
    annotated_record,
    frames_of,
    rgb_record,
    tiny_record,
    uncleaned_record,
)

from archive.calibration import UltrasoundRegion
from archive.errors import ExportError
from archive.research.export.card import DatasetCard
from archive.research.export.hdf5 import ExportProgress, HDF5DatasetWriter, sidecar_path
from archive.research.export.hdf5_read import read_dataset
from archive.research.export.records import ClipRecord, clean_frames, metadata_row
from archive.research.export.split import Split, SplitFractions, assign_split


def _write_three(path: Path) -> tuple[dict[str, ClipRecord], dict[str, npt.NDArray[np.uint8]], DatasetCard]:
    cases = [annotated_record(), rgb_record(), uncleaned_record()]
    with HDF5DatasetWriter(path, seed=7, card_info=CARD, allow_not_pixel_cleaned=True) as writer:
        for record, _ in cases:
            writer.add_clip(record)
    card = DatasetCard.from_json(h5py.File(path, "r").attrs["card_json"])
    return {r.clip_key: r for r, _ in cases}, {r.clip_key: f for r, f in cases}, card


def _nan_or(point: tuple[float, float] | None) -> npt.NDArray[np.float64]:
    return np.full(2, np.nan) if point is None else np.asarray(point)


def test_round_trip_every_field(tmp_path: Path) -> None:
    path = tmp_path / "research.h5"
    records, frames, written_card = _write_three(path)
    assert not (tmp_path / "research.h5.partial").exists()

    with read_dataset(path) as dataset:
        assert list(dataset.clips) == ["2.25.1", "2.25.2", "2.25.3"]
        for key, record in records.items():
            clip = dataset.clips[key]
            # frames: exact, lazily read one at a time, chunked per frame and compressed
            assert clip.frames.chunks == (1, *record.frame_shape)
            assert clip.frames.compression == "gzip"
            assert np.array_equal(clip.frames[1], frames[key][1])
            assert np.array_equal(clip.frames[()], frames[key])
            assert clip.frame_times_ms.tolist() == list(record.frame_times_ms)
            assert clip.pixel_size_mm == record.pixel_size_mm
            split = assign_split(7, record.patient_pseudonym, SplitFractions())
            assert clip.split is split
            assert clip.metadata == metadata_row(record, split)

        row = dataset.clips["2.25.1"].metadata
        assert row["levels"] == "L4,L5"
        assert (row["side"], row["technique"], row["status"]) == ("left", "OT", "approved")
        assert row["procedure_type"] == "medial branch block"
        assert (row["outcome_vas_pre"], row["outcome_odi_2w"], row["outcome_effective"]) == (8.0, 30.0, True)
        assert row["outcome_adverse_event"] == "nerve irritation"
        assert (row["pixel_size_row_mm"], row["pixel_size_col_mm"], row["duration_ms"]) == (0.2, 0.15, 199.5)
        expected_metrics = dict(records["2.25.1"].metrics or {})
        del expected_metrics["sop_instance_uid"], expected_metrics["reviewer"]
        assert dataset.clips["2.25.1"].metrics == expected_metrics
        # frame numbers are 1-based in the file: the breach on frame index 3 is frame 4
        assert dataset.clips["2.25.1"].metrics["breaches"] == [
            {"frame": 4, "danger_class": "nerve root", "by": "tip"}
        ]
        rgb = dataset.clips["2.25.2"]
        assert rgb.metadata["samples_per_pixel"] == 3 and rgb.frames.attrs["photometric"] == "RGB"
        assert rgb.metadata["has_outcome"] is False and rgb.metadata["outcome_effective"] is None
        assert rgb.metadata["metric_needle_angle_deg"] is None and rgb.labels is None
        assert rgb.annotation() is None

        # the annotation: keyframes come back as keyframes; comments and the source UID stay out
        original = records["2.25.1"].annotation
        assert original is not None
        clip = dataset.clips["2.25.1"]
        rebuilt = clip.annotation()
        assert rebuilt == dataclasses.replace(original, sop_instance_uid="2.25.1", comments=())
        assert rebuilt is not None and rebuilt.keyframes("needle") == (1, 3, 5)

        # dense per-frame arrays hold the interpolated marks too
        labels = clip.labels
        assert labels is not None
        for frame in range(T):
            mark = original.needle_at(frame)
            polyline = labels.needle_polyline(frame)
            if mark is None:
                assert polyline is None and labels.needle_view[frame] == 0
            else:
                assert polyline is not None and polyline.tolist() == [list(p) for p in mark.points]
            np.testing.assert_array_equal(labels.tips[frame], _nan_or(original.tip_at(frame)))
            target = original.target_at(frame)
            np.testing.assert_array_equal(
                labels.target_points[frame], _nan_or(None if target is None else target.point)
            )
            name = None if target is None else labels.target_names[labels.target_name_index[frame]]
            assert name == (None if target is None else target.name)
            # masks are written on their keyframes only (carrying them is archive.review.temporal's)
            spread = labels.spread_mask(frame)
            assert (spread is None) == (frame not in original.spread)
            if spread is not None:
                assert np.array_equal(spread, original.spread[frame])
            danger = labels.danger_at(frame)
            stored = original.danger.get(frame, {})
            assert danger.keys() == stored.keys()
            assert all(np.array_equal(m, stored[c]) for c, m in danger.items())
        assert labels.needle_view.tolist() == [0, 1, 1, 1, 0, 2, 0]  # 3..5 change view: no needle at 4
        assert labels.needle_keyframe.tolist() == [False, True, False, True, False, True, False]
        assert labels.target_names == ("L4 SAP–TP junction", "L5 S1 SAP–ala junction")
        assert labels.danger_classes == ("nerve root", "spinal canal", "vessel")
        assert labels.danger_masks.dtype == np.uint8 and labels.spread_masks.shape == (T, H, W)
        assert labels.events == original.events
        assert labels.adverse_events == original.adverse_events
        # in the file itself events and adverse events are frame numbers, 1-based
        with h5py.File(path, "r") as raw:
            group = raw["clips/2.25.1/annotation"]
            assert dict(group["events"].attrs) == {e.value: f + 1 for e, f in original.events.items()}
            assert group["adverse_events/frames"][()].tolist() == [
                a.frame + 1 for a in original.adverse_events
            ]

        # the card: in the file attributes and in the sidecar
        card = dataset.card
        assert card == written_card
        assert (card.n_clips, card.n_patients, card.n_frames, card.n_annotated) == (3, 2, T + 3 + 2, 1)
        assert card.info == CARD and card.seed == 7 and card.split_fractions == (0.7, 0.15, 0.15)
        assert card.clips_per_status == {"approved": 1, "none": 2}
        assert sum(card.clips_per_split.values()) == 3 and sum(card.patients_per_split.values()) == 2
        assert card.not_pixel_cleaned == ("2.25.3",)
    sidecar = sidecar_path(path).read_text(encoding="utf-8")
    assert sidecar_path(path).name == "research.card.md"
    assert "Test MBB clips" in sidecar and "- clips: 3" in sidecar
    assert "NOT pixel-cleaned" in sidecar and "`2.25.3`" in sidecar


def test_uncalibrated_clip_flagged_not_cleaned(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    _write_three(path)
    with read_dataset(path) as dataset:
        row = dataset.clips["2.25.3"].metadata
        assert (row["pixels_cleaned"], row["calibrated"]) == (False, False)
        assert dataset.clips["2.25.3"].pixel_size_mm is None
        assert math.isnan(h5py.File(path, "r")["clips/2.25.3/pixel_size_mm"][0])
        assert dataset.clips["2.25.1"].metadata["pixels_cleaned"] is True
        assert h5py.File(path, "r").attrs["card_n_not_pixel_cleaned"] == 1


def test_not_cleaned_clip_needs_permission(tmp_path: Path) -> None:
    path = tmp_path / "d.h5"
    with HDF5DatasetWriter(path, seed=1, card_info=CARD) as writer:
        with pytest.raises(ExportError, match="allow_not_pixel_cleaned"):
            writer.add_clip(uncleaned_record()[0])
        writer.add_clip(tiny_record("2.25.9", "P"))
    with HDF5DatasetWriter(tmp_path / "e.h5", seed=1, card_info=CARD, allow_not_pixel_cleaned=True) as w2:
        calibrated_uncleaned = dataclasses.replace(uncleaned_record()[0], pixel_size_mm=(0.1, 0.1))
        with pytest.raises(ExportError, match="calibrated clip to be pixel-cleaned"):
            w2.add_clip(calibrated_uncleaned)
    with read_dataset(path) as dataset:
        assert list(dataset.clips) == ["2.25.9"] and dataset.card.not_pixel_cleaned == ()


def test_exception_mid_clip_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    frames = np.zeros((5, 4, 4), dtype=np.uint8)

    def failing_decoder() -> Iterator[npt.NDArray[np.uint8]]:
        yield frames[0]
        yield frames[1]
        raise RuntimeError("decoder crashed on frame 2")

    broken = dataclasses.replace(
        tiny_record("2.25.5", "P"),
        frames=failing_decoder,
        n_frames=5,
        frame_times_ms=(0.0, 1.0, 2.0, 3.0, 4.0),
    )
    with (
        pytest.raises(RuntimeError, match="frame 2"),
        HDF5DatasetWriter(path, seed=1, card_info=CARD) as writer,
    ):
        writer.add_clip(tiny_record("2.25.4", "P"))
        assert writer.partial_path.exists() and not path.exists()
        writer.add_clip(broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_clip_is_removed_and_writer_stays_usable(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    wrong_shape = dataclasses.replace(tiny_record("2.25.6", "P"), frame_shape=(4, 5))
    too_few = dataclasses.replace(tiny_record("2.25.7", "P"), n_frames=3, frame_times_ms=(0.0, 1.0, 2.0))
    with HDF5DatasetWriter(path, seed=1, card_info=CARD) as writer:
        with pytest.raises(ExportError, match=r"expected uint8 of shape \(4, 5\)"):
            writer.add_clip(wrong_shape)
        with pytest.raises(ExportError, match="expected 3 frames, but the frame source yielded 2"):
            writer.add_clip(too_few)
        writer.add_clip(tiny_record("2.25.8", "P"))
        with pytest.raises(ExportError, match="already in this dataset"):
            writer.add_clip(tiny_record("2.25.8", "P"))
    with read_dataset(path) as dataset:
        assert list(dataset.clips) == ["2.25.8"] and len(dataset.metadata) == 1
        assert set(h5py.File(path, "r")["clips"]) == {"2.25.8"}


def test_existing_file_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "out.h5"
    path.write_bytes(b"old")
    with pytest.raises(ExportError, match="the file exists"):
        HDF5DatasetWriter(path, seed=1, card_info=CARD)
    assert path.read_bytes() == b"old"
    with HDF5DatasetWriter(path, seed=1, card_info=CARD, overwrite=True) as writer:
        writer.add_clip(tiny_record("2.25.1", "P"))
    with read_dataset(path) as dataset:
        assert len(dataset) == 1


def test_close_inside_with_returns_the_card_once(tmp_path: Path) -> None:
    path = tmp_path / "c.h5"
    with HDF5DatasetWriter(path, seed=3, card_info=CARD) as writer:
        writer.add_clip(tiny_record("2.25.1", "P"))
        card = writer.close()
        assert path.exists() and not writer.partial_path.exists()
        with pytest.raises(ExportError, match="the writer is closed"):
            writer.add_clip(tiny_record("2.25.2", "P"))
    assert (card.n_clips, card.n_frames, card.seed) == (1, 2, 3)
    with read_dataset(path) as dataset:
        assert dataset.card == card


def test_split_is_patient_level_and_deterministic(tmp_path: Path) -> None:
    patients = [f"PAT-{i:03d}" for i in range(60)]
    records = [tiny_record(f"2.25.{i}.{k}", p) for i, p in enumerate(patients) for k in (1, 2)]

    def export(name: str, seed: int, order: list[ClipRecord]) -> dict[str, Split]:
        with HDF5DatasetWriter(tmp_path / name, seed=seed, card_info=CARD) as writer:
            splits = {r.clip_key: writer.add_clip(r) for r in order}
        with read_dataset(tmp_path / name) as dataset:
            assert {k: c.split for k, c in dataset.clips.items()} == splits
            by_patient = dataset.split_of_patients()
            for clip in dataset:
                assert clip.split is by_patient[clip.metadata["patient_pseudonym"]]
            assert sum(len(dataset.in_split(s)) for s in Split) == len(order)
        return splits

    first = export("a.h5", 11, records)
    again = export("b.h5", 11, records[::-1])
    other = export("c.h5", 12, records)
    assert first == again
    assert first != other
    assert set(first.values()) == set(Split)  # 60 patients at 70/15/15 reach every split
    assert all(assign_split(11, p, SplitFractions(1.0, 0.0, 0.0)) is Split.TRAIN for p in patients)
    with pytest.raises(ExportError, match="summing to 1"):
        SplitFractions(0.5, 0.2, 0.2)


def test_progress_reported_per_frame(tmp_path: Path) -> None:
    seen: list[ExportProgress] = []
    with HDF5DatasetWriter(tmp_path / "p.h5", seed=1, card_info=CARD, progress=seen.append) as writer:
        writer.add_clip(tiny_record("2.25.1", "P"))
        writer.add_clip(rgb_record()[0])
    assert [(p.clips_done, p.clip_key, p.frames_done, p.clip_frames) for p in seen] == [
        (0, "2.25.1", 1, 2),
        (0, "2.25.1", 2, 2),
        (1, "2.25.2", 1, 3),
        (1, "2.25.2", 2, 3),
        (1, "2.25.2", 3, 3),
    ]


def test_lzf_compression_round_trips(tmp_path: Path) -> None:
    record, frames = annotated_record()
    with HDF5DatasetWriter(tmp_path / "l.h5", seed=1, card_info=CARD, compression="lzf") as writer:
        writer.add_clip(record)
    with read_dataset(tmp_path / "l.h5") as dataset:
        clip = dataset.clips["2.25.1"]
        assert clip.frames.compression == "lzf" and np.array_equal(clip.frames[()], frames)
        assert dataset.card.compression == "lzf"


def test_reader_rejects_other_hdf5_files(tmp_path: Path) -> None:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("frames", data=np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(ExportError, match="expected a usarchive research dataset"):
        read_dataset(path)


def test_record_checks_its_annotation_and_key() -> None:
    record, _ = annotated_record()
    with pytest.raises(ExportError, match="annotation of another clip"):
        dataclasses.replace(record, n_frames=T + 1, frame_times_ms=tuple(range(T + 1)))
    with pytest.raises(ExportError, match="without '/'"):
        dataclasses.replace(record, clip_key="a/b")
    with pytest.raises(ExportError, match="not in the export schema"):
        dataclasses.replace(record, metrics={"made_up": 1.0})
    frames = np.zeros((1, H, W), dtype=np.uint8)
    with pytest.raises(ExportError, match="one frame time per frame"):
        ClipRecord("k", "p", lambda: frames_of(frames), 1, (H, W), (), None)


def test_cleaned_frames_are_zero_outside_the_2d_region(tmp_path: Path) -> None:
    region = UltrasoundRegion(3, 2, 12, 9, 1, 1, 3, 3, 0.02, 0.02)  # cols 3..12, rows 2..9
    doppler = UltrasoundRegion(0, 10, 15, 11, 3, 3, 4, 7, 0.01, 1.0)  # keeps nothing
    grey = np.full((2, H, W), 200, dtype=np.uint8)
    rgb = np.full((2, H, W, 3), 90, dtype=np.uint8)
    inside = np.zeros((H, W), dtype=bool)
    inside[2:10, 3:13] = True
    for frames in (grey, rgb):
        record = dataclasses.replace(
            tiny_record("2.25.1", "P"),
            frames=lambda f=frames: clean_frames(frames_of(f), (region, doppler)),
            frame_shape=frames.shape[1:],
        )
        path = tmp_path / f"{frames.ndim}.h5"
        with HDF5DatasetWriter(path, seed=1, card_info=CARD) as writer:
            writer.add_clip(record)
        with read_dataset(path) as dataset:
            stored = dataset.clips["2.25.1"].frames[()]
        assert (stored[:, ~inside] == 0).all()
        assert (stored[:, inside] == frames[0, 2, 3]).all()
    with pytest.raises(ExportError, match="at least one 2D ultrasound region"):
        next(clean_frames(frames_of(grey), (doppler,)))
