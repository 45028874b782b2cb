"""The fixed sample set committed in ``sample_dicom/``, with its README table.

Each entry records the spec and seed it is generated from, so a test can
regenerate the set and compare it with the committed files.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import pydicom

from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.phantom.generate import write_clip
from archive.phantom.spec import ClipSpec, Descriptions, Encoding, PatientIdentity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sample:
    """One committed clip: file stem, spec and seed."""

    stem: str
    spec: ClipSpec
    seed: int


def _who(letter: str, number: int, birth: dt.date, sex: str) -> PatientIdentity:
    return PatientIdentity(
        patient_name=f"PHANTOM^{letter}",
        patient_id=f"PH{number:06d}",
        birth_date=birth,
        sex=sex,
        accession=f"ACC{number:06d}",
        institution="Phantom General Hospital",
        operator="SONOGRAPHER^DEMO",
    )


_ALPHA = _who("ALPHA", 1, dt.date(1961, 3, 14), "F")
_BRAVO = _who("BRAVO", 2, dt.date(1957, 11, 2), "M")
_CHARLIE = _who("CHARLIE", 3, dt.date(1970, 6, 25), "F")
_DELTA = _who("DELTA", 4, dt.date(1966, 1, 9), "M")
_DAY_A = dt.date(2024, 5, 6)
_DAY_B = dt.date(2024, 5, 7)

SAMPLES: tuple[Sample, ...] = (
    Sample(
        "l3_tt_inplane_jpeg",
        ClipSpec(
            level=SpinalLevel.L3,
            side=Side.RIGHT,
            technique=Technique.TT,
            needle_angle_deg=32.0,
            frames=32,
            rows=400,
            cols=540,
            frame_time_ms=66.0,
            encoding=Encoding.JPEG_BASELINE,
            identity=_ALPHA,
            descriptions=Descriptions(series="L3 MB R", performed_step="MBB TT L3-L5 R"),
            study_date=_DAY_A,
            content_time=dt.time(9, 41, 12),
            series_number=1,
        ),
        seed=301,
    ),
    Sample(
        "l4_tt_inplane_mono",
        ClipSpec(
            level=SpinalLevel.L4,
            side=Side.RIGHT,
            technique=Technique.TT,
            needle_angle_deg=36.0,
            frames=30,
            rows=280,
            cols=380,
            frame_time_ms=66.0,
            encoding=Encoding.EXPLICIT_MONO,
            identity=_ALPHA,
            descriptions=Descriptions(series="L4/5 MBB R", performed_step="MBB TT L3-L5 R"),
            study_date=_DAY_A,
            content_time=dt.time(9, 43, 50),
            series_number=2,
        ),
        seed=402,
    ),
    Sample(
        "l5_tt_outofplane_jpeg",
        ClipSpec(
            level=SpinalLevel.L5,
            side=Side.RIGHT,
            technique=Technique.TT,
            needle_view=NeedleView.OUT_OF_PLANE,
            frames=32,
            rows=360,
            cols=480,
            frame_time_ms=66.0,
            encoding=Encoding.JPEG_BASELINE,
            identity=_ALPHA,
            descriptions=Descriptions(series="L5 DR R OOP", performed_step="MBB TT L3-L5 R"),
            study_date=_DAY_A,
            content_time=dt.time(9, 47, 31),
            series_number=3,
        ),
        seed=503,
    ),
    Sample(
        "l4_ot_inplane_jpeg",
        ClipSpec(
            level=SpinalLevel.L4,
            side=Side.LEFT,
            technique=Technique.OT,
            needle_angle_deg=34.0,
            frames=32,
            rows=360,
            cols=480,
            frame_time_ms=66.0,
            encoding=Encoding.JPEG_BASELINE,
            identity=_BRAVO,
            descriptions=Descriptions(
                study="Lumbar facet block", series="L4 MB Lt", performed_step="L5 DR one-needle"
            ),
            study_date=_DAY_B,
            content_time=dt.time(14, 5, 9),
            series_number=1,
            instance_number=1,
        ),
        seed=404,
    ),
    Sample(
        "l5_ot_inplane_oblique_chinese_jpeg",
        ClipSpec(
            level=SpinalLevel.L5,
            side=Side.RIGHT,
            technique=Technique.OT,
            needle_angle_deg=38.0,
            oblique=True,
            frames=30,
            rows=360,
            cols=480,
            frame_time_ms=66.0,
            encoding=Encoding.JPEG_BASELINE,
            identity=_CHARLIE,
            descriptions=Descriptions(
                study="腰椎 脊神经后内侧支阻滞",
                series="腰椎 L5 右 一针两点 平面内",
                performed_step="超声引导 L4/L5 一针两点",
                protocol="MSK 脊柱",
                character_set="ISO_IR 192",
            ),
            study_date=_DAY_B,
            content_time=dt.time(15, 22, 40),
            series_number=1,
            instance_number=2,
        ),
        seed=505,
    ),
    Sample(
        "c45_danger_mono",
        ClipSpec(
            level=SpinalLevel.C4,
            side=Side.RIGHT,
            technique=Technique.UNKNOWN,
            needle_angle_deg=30.0,
            danger=True,
            frames=24,
            rows=280,
            cols=360,
            depth_mm=45.0,
            frame_time_ms=50.0,
            encoding=Encoding.EXPLICIT_MONO,
            identity=_DELTA,
            descriptions=Descriptions(
                study="US Cervical MBB",
                series="C4/5 MBB R IP",
                performed_step="Cervical medial branch block",
                body_part="CSPINE",
            ),
            study_date=_DAY_B,
            content_time=dt.time(10, 31, 3),
            series_number=1,
        ),
        seed=45,
    ),
    Sample(
        "l4_single_frame_rgb",
        ClipSpec(
            level=SpinalLevel.L4,
            side=Side.LEFT,
            technique=Technique.OT,
            needle_angle_deg=33.0,
            frames=1,
            rows=400,
            cols=560,
            encoding=Encoding.EXPLICIT_RGB,
            identity=_BRAVO,
            descriptions=Descriptions(
                study="Lumbar facet block", series="L4 MB Lt", performed_step="L5 DR one-needle"
            ),
            study_date=_DAY_B,
            content_time=dt.time(14, 6, 0),
            series_number=1,
            instance_number=3,
        ),
        seed=406,
    ),
)

_README_HEAD = """\
# sample_dicom: synthetic ultrasound-guided spinal injection clips

Written by the phantom generator (`archive/phantom/`); regenerate with

    usarchive sample samples sample_dicom/

Every `<stem>.dcm` has a ground truth `<stem>.json` (schema
`usarchive-phantom-truth/1`, see `archive/phantom/truth.py`): per-frame needle
polyline and tip as `[row, col]`, target, injectate spread mask and danger mask
(packbits + zlib + base64, shape `[T, rows, cols]`), event frames, level, side,
technique, the calibration (Sequence of Ultrasound Regions item) and audit
metrics computed from the geometric model in mm. All patients are fictitious;
the banner above the 2D region carries their burned-in name, ID and birth date
(for de-identification tests). The descriptions are written the way operators
type them.

"""

_README_TAIL = """
## Checks

* `dciodvfy` (dicom3tools) reports no errors and no warnings for every file;
  `tests/archive/phantom/test_phantom_samples.py` asserts it.
* pydicom decodes every frame of every clip (same test module).
* Regeneration: the test regenerates the set from the seeds above and
  compares. Explicit VR Little Endian files and all JSON files must be
  byte-identical. JPEG Baseline files are compared byte for byte on
  everything except the compressed pixel data and Lossy Image Compression
  Ratio, and frame by frame on the decoded pixels (max abs difference
  ≤ 6 grey levels): the JPEG streams come from the libjpeg(-turbo) that
  Pillow is built with, whose encoder output may change between versions.
  With the pinned environment (Pillow 13.0.0, libjpeg-turbo 3.2.0) they are
  byte-identical as well.
"""


def write_samples(out_dir: Path) -> list[tuple[Path, Path]]:
    """Write the sample set and its ``README.md`` into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Created if missing.

    Returns
    -------
    list of (Path, Path)
        ``(dcm, json)`` per sample, in :data:`SAMPLES` order.
    """
    out_dir = Path(out_dir)
    written = [write_clip(sample.spec, out_dir, sample.seed, stem=sample.stem) for sample in SAMPLES]
    (out_dir / "README.md").write_text(samples_readme(out_dir), encoding="utf-8")
    logger.info("wrote %d samples to %s", len(written), out_dir)
    return written


def samples_readme(out_dir: Path) -> str:
    """The README text: intro, one table row per sample (read from the files), checks."""
    header = (
        "| file | SOP class | transfer syntax | photometric | frames | rows × cols | size (kB) "
        "| level | side | technique | needle | Study / Series / Performed Step Description | seed |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    total = 0
    for sample in SAMPLES:
        path = Path(out_dir) / f"{sample.stem}.dcm"
        size = path.stat().st_size
        total += size
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        spec = sample.spec
        descriptions = " / ".join(
            str(ds.get(k, ""))
            for k in ("StudyDescription", "SeriesDescription", "PerformedProcedureStepDescription")
        )
        level = "C4/5" if spec.level is SpinalLevel.C4 else spec.level.value
        view = spec.needle_view.value + (" (oblique view)" if spec.oblique else "")
        if spec.danger:
            view += ", spinal canal danger"
        lines.append(
            f"| `{path.name}` | {ds.SOPClassUID.name} | {ds.file_meta.TransferSyntaxUID.name} "
            f"| {ds.PhotometricInterpretation} | {spec.frames} | {spec.rows} × {spec.cols} | {size // 1000} "
            f"| {level} | {spec.side.value} | {spec.technique.value} | {view} | {descriptions} "
            f"| {sample.seed} |"
        )
    summary = f"\nTotal DICOM size: {total / 1e6:.1f} MB.\n"
    return _README_HEAD + header + "\n".join(lines) + "\n" + summary + _README_TAIL
