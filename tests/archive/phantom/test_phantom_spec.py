"""Out-of-range generator arguments raise PhantomError with a clear message."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from archive.errors import PhantomError
from archive.model import Side, SpinalLevel
from archive.phantom import (
    ClipSpec,
    Descriptions,
    GroundTruth,
    PatientIdentity,
    decode_mask,
    encode_mask,
    generate_clip,
)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("needle_angle_deg", 85.0, r"needle_angle_deg: expected a value from 10 to 80, but got 85\.0"),
        ("frames", 3, r"frames: expected 1 \(single frame\) or 8 to 600, but got 3"),
        ("rows", 100, r"rows: expected a value from 160 to 1024, but got 100"),
        ("frame_time_ms", 0.0, r"frame_time_ms: expected a value from 10 to 1000"),
        ("tip_to_target_mm", -1.0, r"tip_to_target_mm: expected a value from 0 to 10"),
        ("level", SpinalLevel.T4, r"level: expected one of L3, L4, L5, C4"),
        ("side", Side.BILATERAL, r"side: expected left or right"),
        ("danger", True, r"danger: expected False unless level is C4"),
        ("depth_mm", 50.0, r"depth_mm: expected at least target depth \+ 12 mm = 57 mm, but got 50"),
    ],
)
def test_out_of_range_argument_is_named(field: str, value: Any, message: str) -> None:
    with pytest.raises(PhantomError, match=message):
        dataclasses.replace(ClipSpec(), **{field: value})


def test_identity_and_descriptions_are_checked() -> None:
    with pytest.raises(PhantomError, match=r"sex: expected one of F, M, O, but got 'X'"):
        PatientIdentity(sex="X")
    latin1 = r"series: expected Latin-1 text .*\(use 'ISO_IR 192' for Chinese\), but got '腰椎 L5 右'"
    with pytest.raises(PhantomError, match=latin1):
        Descriptions(series="腰椎 L5 右")
    assert Descriptions(series="腰椎 L5 右", character_set="ISO_IR 192").series == "腰椎 L5 右"


def test_seed_out_of_range() -> None:
    with pytest.raises(PhantomError, match=r"seed: expected an integer from 0 to 2\*\*63-1, but got -1"):
        generate_clip(ClipSpec(frames=1, rows=200, cols=260), -1)


def test_phantom_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ClipSpec(cols=5000)


def test_mask_round_trip() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((3, 17, 29)) > 0.7
    record = encode_mask(mask)
    assert record["shape"] == [3, 17, 29]
    assert np.array_equal(decode_mask(record), mask)
    with pytest.raises(PhantomError, match="mask encoding"):
        decode_mask({**record, "encoding": "raw"})


def test_ground_truth_json_round_trip() -> None:
    _, truth = generate_clip(ClipSpec(frames=8, rows=200, cols=260), 4)
    again = GroundTruth.from_json(truth.to_json())
    assert again.to_json() == truth.to_json()
    assert np.array_equal(again.spread, truth.spread)
    assert again.metrics == truth.metrics
    with pytest.raises(PhantomError, match="schema"):
        GroundTruth.from_json('{"schema": "other/1"}')


def test_in_plane_path_through_bone_is_refused() -> None:
    flat_l5 = ClipSpec(level=SpinalLevel.L5, needle_angle_deg=15.0, frames=1, rows=200, cols=260)
    with pytest.raises(
        PhantomError, match=r"needle_angle_deg: .* at 15 deg the shaft crosses the iliac crest"
    ):
        generate_clip(flat_l5, 1)
    _, truth = generate_clip(dataclasses.replace(flat_l5, needle_angle_deg=35.0), 1)
    assert truth.metrics.needle_angle_to_skin_deg == 35.0
