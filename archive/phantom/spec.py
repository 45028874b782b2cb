"""What one synthetic clip should show: identity, descriptions, anatomy, needle, encoding.

A :class:`ClipSpec` is validated when it is built; every out-of-range argument
raises :class:`~archive.errors.PhantomError` naming the parameter, its range
and the value that came.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from archive.errors import PhantomError
from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.worklist.model import WorklistEntry

#: Target levels the anatomy model can draw.
SUPPORTED_LEVELS = (SpinalLevel.L3, SpinalLevel.L4, SpinalLevel.L5, SpinalLevel.C4)


class Encoding(enum.StrEnum):
    """How the pixel data are stored."""

    #: Explicit VR Little Endian, MONOCHROME2.
    EXPLICIT_MONO = "explicit-mono"
    #: Explicit VR Little Endian, RGB (colour banner).
    EXPLICIT_RGB = "explicit-rgb"
    #: JPEG Baseline (process 1), YBR_FULL_422, frames encapsulated.
    JPEG_BASELINE = "jpeg-baseline"


@dataclass(frozen=True)
class PatientIdentity:
    """Who and where: the strings a de-identification test looks for.

    Parameters
    ----------
    patient_name : str
        DICOM PN, e.g. ``"PHANTOM^ALPHA"``; also burned into the banner.
    patient_id : str
        Also burned into the banner.
    birth_date : datetime.date
        Burned into the banner as YYYY-MM-DD.
    sex : str
        ``"F"``, ``"M"`` or ``"O"``.
    accession : str
        Accession Number.
    institution : str
        Institution Name; also burned into the banner.
    operator : str
        Operators' Name (PN).
    """

    patient_name: str = "PHANTOM^ALPHA"
    patient_id: str = "PH000001"
    birth_date: dt.date = dt.date(1961, 3, 14)
    sex: str = "F"
    accession: str = "ACC000001"
    institution: str = "Phantom General Hospital"
    operator: str = "SONOGRAPHER^DEMO"

    def __post_init__(self) -> None:
        _require(self.sex in ("F", "M", "O"), "sex", "one of F, M, O", self.sex)
        for name in ("patient_name", "patient_id", "accession"):
            value = getattr(self, name)
            _require(0 < len(value) <= 64, name, "1 to 64 characters", value)


@dataclass(frozen=True)
class Descriptions:
    """Free text the operator typed, exactly as the scanner stores it.

    Parameters
    ----------
    study, series, performed_step, protocol : str
        Study Description, Series Description, Performed Procedure Step
        Description and Protocol Name, e.g. ``"L4/5 MBB R"``.
    body_part : str
        Body Part Examined, ``"LSPINE"`` or ``"CSPINE"``.
    character_set : str
        Specific Character Set: ``"ISO_IR 100"`` or ``"ISO_IR 192"`` (UTF-8,
        needed for Chinese descriptions).
    """

    study: str = "US Lumbar MBB"
    series: str = "L4/5 MBB R"
    performed_step: str = "Lumbar medial branch block"
    protocol: str = "MSK Spine"
    body_part: str = "LSPINE"
    character_set: str = "ISO_IR 100"

    def __post_init__(self) -> None:
        _require(
            self.character_set in ("ISO_IR 100", "ISO_IR 192"),
            "character_set",
            "'ISO_IR 100' or 'ISO_IR 192'",
            self.character_set,
        )
        _require(
            self.body_part in ("LSPINE", "CSPINE", "SSPINE"),
            "body_part",
            "LSPINE/CSPINE/SSPINE",
            self.body_part,
        )
        if self.character_set == "ISO_IR 100":
            for name in ("study", "series", "performed_step", "protocol"):
                text = getattr(self, name)
                _require(
                    all(ord(ch) < 256 for ch in text),
                    name,
                    "Latin-1 text with character_set 'ISO_IR 100' (use 'ISO_IR 192' for Chinese)",
                    text,
                )


@dataclass(frozen=True)
class ClipSpec:
    """Everything a synthetic clip shows; validated on construction.

    Parameters
    ----------
    level : SpinalLevel
        Target level: L3, L4 (medial branch), L5 (dorsal ramus) or C4 (C4/5
        cervical view with the spinal canal as danger structure).
    side : Side
        LEFT or RIGHT.
    technique : Technique
        TT, OT, IN_PLANE or OUT_OF_PLANE (recorded, and typed in descriptions).
    needle_view : NeedleView
        In-plane (shaft) or out-of-plane (dot).
    needle_angle_deg : float
        In-plane needle angle to the skin line, 10-80 degrees.
    target_depth_mm : float or None
        Depth of the target below the skin, 12-100 mm; ``None`` uses the
        level's typical depth.
    tip_to_target_mm : float or None
        How far the tip stops from the target, 0-10 mm; ``None`` draws it from
        the seed (0.5-6 mm).
    danger : bool
        Draw the spinal canal / cord near the path (cervical only).
    oblique : bool
        Oblique (caudally tilted) view, as for the OT L5 in-plane approach.
    frames : int
        1 (single-frame Ultrasound Image Storage) or 8-600.
    rows, cols : int
        Image size in pixels, 160-1024 and 200-1280.
    frame_time_ms : float
        Frame Time, 10-1000 ms.
    depth_mm : float
        Imaging depth, 30-160 mm; must exceed the target depth by 12 mm.
    encoding : Encoding
        Transfer syntax and photometric interpretation.
    identity, descriptions : PatientIdentity, Descriptions
        Who, where and what the operator typed.
    study_date : datetime.date
        Study Date and Content Date.
    content_time : datetime.time
        Content Time of the first frame.
    series_number, instance_number : int
        Series Number (1-9999) and Instance Number (1-9999).
    study_key : str
        Extra entropy for the Study Instance UID so clips of one study share it.
    worklist : WorklistEntry or None
        The worklist entry the scanner picked: its patient, Accession Number,
        Study Instance UID and Request Attributes Sequence are written as a
        scanner copies them (:func:`archive.worklist.dataset.copy_into`);
        the descriptions stay what the operator typed.
    """

    level: SpinalLevel = SpinalLevel.L4
    side: Side = Side.RIGHT
    technique: Technique = Technique.TT
    needle_view: NeedleView = NeedleView.IN_PLANE
    needle_angle_deg: float = 35.0
    target_depth_mm: float | None = None
    tip_to_target_mm: float | None = None
    danger: bool = False
    oblique: bool = False
    frames: int = 40
    rows: int = 400
    cols: int = 560
    frame_time_ms: float = 66.0
    depth_mm: float = 80.0
    encoding: Encoding = Encoding.EXPLICIT_MONO
    identity: PatientIdentity = field(default_factory=PatientIdentity)
    descriptions: Descriptions = field(default_factory=Descriptions)
    study_date: dt.date = dt.date(2024, 5, 6)
    content_time: dt.time = dt.time(10, 12, 30)
    series_number: int = 1
    instance_number: int = 1
    study_key: str = ""
    worklist: WorklistEntry | None = None

    def __post_init__(self) -> None:
        _require(self.level in SUPPORTED_LEVELS, "level", "one of L3, L4, L5, C4", self.level)
        _require(self.side in (Side.LEFT, Side.RIGHT), "side", "left or right", self.side)
        _require(isinstance(self.needle_view, NeedleView), "needle_view", "a NeedleView", self.needle_view)
        _require(isinstance(self.encoding, Encoding), "encoding", "an Encoding", self.encoding)
        _in_range("needle_angle_deg", self.needle_angle_deg, 10.0, 80.0)
        _in_range("frame_time_ms", self.frame_time_ms, 10.0, 1000.0)
        _in_range("depth_mm", self.depth_mm, 30.0, 160.0)
        _in_range("rows", self.rows, 160, 1024)
        _in_range("cols", self.cols, 200, 1280)
        _require(
            self.frames == 1 or 8 <= self.frames <= 600,
            "frames",
            "1 (single frame) or 8 to 600",
            self.frames,
        )
        _in_range("series_number", self.series_number, 1, 9999)
        _in_range("instance_number", self.instance_number, 1, 9999)
        if self.target_depth_mm is not None:
            _in_range("target_depth_mm", self.target_depth_mm, 12.0, 100.0)
        _require(
            self.target_depth <= self.depth_mm - 12.0,
            "depth_mm",
            f"at least target depth + 12 mm = {self.target_depth + 12.0:g} mm",
            self.depth_mm,
        )
        if self.tip_to_target_mm is not None:
            _in_range("tip_to_target_mm", self.tip_to_target_mm, 0.0, 10.0)
        _require(
            not self.danger or self.level is SpinalLevel.C4,
            "danger",
            "False unless level is C4 (the spinal canal is drawn in the cervical view)",
            self.danger,
        )

    @property
    def target_depth(self) -> float:
        """Target depth in mm: the given one or the level's typical depth."""
        if self.target_depth_mm is not None:
            return self.target_depth_mm
        return {SpinalLevel.L3: 40.0, SpinalLevel.L4: 45.0, SpinalLevel.L5: 50.0, SpinalLevel.C4: 22.0}[
            self.level
        ]

    @property
    def single_frame(self) -> bool:
        """Whether the clip is one image (Ultrasound Image Storage)."""
        return self.frames == 1


def _require(ok: bool, name: str, expected: str, got: object) -> None:
    if not ok:
        raise PhantomError(f"phantom {name}: expected {expected}, but got {got!r}; change that argument")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    _require(low <= value <= high, name, f"a value from {low:g} to {high:g}", value)
