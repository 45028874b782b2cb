"""A phantom clip through the research export as the export command will do it.

Header-derived calibration and frame times, Clean Pixel Data while streaming,
the perfect reviewer's annotation and its audit metrics: everything read back
equals what went in, and the burned-in banner is gone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from hdf5_cases import CARD

from archive.analysis.metrics import clip_metrics
from archive.calibration import Calibration
from archive.model import NeedleView, SpinalLevel, Technique
from archive.phantom import ClipSpec, generate_clip
from archive.phantom.to_annotation import annotation_from_truth
from archive.research.deid import tissue_regions
from archive.research.deid.pixels import keep_mask
from archive.research.export.hdf5 import HDF5DatasetWriter
from archive.research.export.hdf5_read import read_dataset
from archive.research.export.records import ClipRecord, clean_frames
from archive.timing import frame_times


def test_phantom_clip_round_trip(tmp_path: Path) -> None:
    spec = ClipSpec(level=SpinalLevel.C4, frames=8, rows=160, cols=200, danger=True)
    ds, truth = generate_clip(spec, 3)
    pixels = ds.pixel_array
    regions = tissue_regions(ds)
    calibration = Calibration.from_dataset(ds)
    times = frame_times(ds)
    annotation = annotation_from_truth(truth, "dr.phantom")
    metrics = clip_metrics(annotation, calibration, times).to_dict()
    record = ClipRecord(
        clip_key="2.25.42",
        patient_pseudonym="PAT-PHANTOM",
        frames=lambda: clean_frames(iter(pixels), regions),
        n_frames=int(ds.NumberOfFrames),
        frame_shape=pixels.shape[1:],
        frame_times_ms=times.offsets_ms,
        pixel_size_mm=calibration.pixel_size_mm,
        levels=(spec.level,),
        side=spec.side,
        technique=Technique.parse(spec.technique),
        annotation=annotation,
        metrics=metrics,
    )
    path = tmp_path / "phantom.h5"
    with HDF5DatasetWriter(path, seed=5, card_info=CARD) as writer:
        writer.add_clip(record)

    inside = keep_mask(pixels.shape[1:], regions)
    assert (pixels[:, ~inside] > 0).any(), "the phantom should have a burned-in banner to remove"
    with read_dataset(path) as dataset:
        clip = dataset.clips["2.25.42"]
        stored = clip.frames[()]
        assert (stored[:, ~inside] == 0).all()
        assert np.array_equal(stored[:, inside], pixels[:, inside])
        assert clip.pixel_size_mm == calibration.pixel_size_mm
        assert tuple(clip.frame_times_ms) == times.offsets_ms
        assert clip.annotation() == dataclasses.replace(annotation, sop_instance_uid="2.25.42")
        labels = clip.labels
        assert labels is not None and labels.danger_classes == (truth.danger_name,)
        view = 1 if NeedleView.parse(truth.needle_view) is NeedleView.IN_PLANE else 2
        visible = [line is not None for line in truth.needle]
        assert (labels.needle_view == np.where(visible, view, 0)).all()
        expected = {k: v for k, v in metrics.items() if k not in ("sop_instance_uid", "reviewer")}
        assert clip.metrics == expected
        assert expected["min_tip_to_danger_mm"] is not None and expected["needle_angle_deg"] is not None
        assert clip.metadata["levels"] == "C4" and clip.metadata["pixels_cleaned"] is True
