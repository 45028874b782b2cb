"""A synthetic cohort: patients × sides × procedures, with outcomes, for indexing and audits.

Each patient gets one study, one technique (TT or OT, balanced) and one or
both sides. Per side: an optional L3 clip, then TT = L4 in-plane + L5
out-of-plane (two punctures, separate series) or OT = L4 in-plane + L5
in-plane in an oblique view (one puncture, one series). Content times are
spaced so that the time per side (first needle seen to last injection end)
follows the study's figures: OT 306 ± 25 s, TT 485 ± 56 s. ``outcomes.csv``
holds VAS/ODI before, 1 h and 2 weeks after, effective in about 75 % (OT) and
47 % (TT) of sides, and a few TT nerve irritations.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from archive.analysis.outcomes.model import CSV_COLUMNS
from archive.errors import PhantomError
from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.phantom.course import timeline
from archive.phantom.encode import clip_uids
from archive.phantom.generate import write_clip
from archive.phantom.spec import ClipSpec, Descriptions, Encoding, PatientIdentity

logger = logging.getLogger(__name__)

#: Mean and SD of the procedure time per side, seconds (the study's figures).
PROCEDURE_TIME_S = {Technique.OT: (306.0, 25.0), Technique.TT: (485.0, 56.0)}
#: Share of effective sides per technique.
EFFECTIVE_RATE = {Technique.OT: 0.75, Technique.TT: 0.47}
ADVERSE_EVENT = "lower-limb nerve irritation during L5 puncture"
#: Columns of the outcomes CSV the cohort writes: those :mod:`archive.analysis.outcomes.model` reads.
OUTCOME_COLUMNS = CSV_COLUMNS


@dataclass(frozen=True)
class CohortClip:
    """One written clip of the cohort (paths relative to the cohort directory)."""

    patient_id: str
    study_uid: str
    side: str
    technique: str
    level: str
    needle_view: str
    series_number: int
    instance_number: int
    content_datetime: str
    seed: int
    dcm: str
    truth: str


@dataclass(frozen=True)
class Procedure:
    """One side of one patient treated: the unit of ``outcomes.csv``."""

    study_uid: str
    side: Side
    technique: Technique
    procedure_time_s: float


@dataclass(frozen=True)
class _Step:
    level: SpinalLevel
    view: NeedleView
    oblique: bool
    series: str


def generate_cohort(
    out_dir: Path,
    n_patients: int,
    seed: int,
    *,
    rows: int = 200,
    cols: int = 260,
    frames: int = 24,
    frame_time_ms: float = 100.0,
    encoding: Encoding = Encoding.EXPLICIT_MONO,
    progress: Callable[[int], None] | None = None,
) -> list[CohortClip]:
    """Write a cohort of clips, ``outcomes.csv`` and ``manifest.json`` into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Created if missing; clips go to ``<patient_id>/`` below it.
    n_patients : int
        1 to 500.
    seed : int
        0 to 2**31 − 1; the same arguments give the same cohort.
    rows, cols, frames, frame_time_ms, encoding
        Clip format (small by default, so cohorts are quick).
    progress : callable, optional
        Called with 1 after each patient's clips are written (a progress bar).

    Returns
    -------
    list of CohortClip
        In the order written.

    Raises
    ------
    PhantomError
        If ``n_patients`` or ``seed`` is out of range (clip arguments are
        checked by :class:`ClipSpec`).
    """
    if not 1 <= n_patients <= 500:
        raise PhantomError(
            f"cohort n_patients: expected 1 to 500, but got {n_patients!r}; change that argument"
        )
    if not 0 <= seed < 2**31:
        raise PhantomError(f"cohort seed: expected 0 to 2**31-1, but got {seed!r}; change that argument")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 100])
    half = math.ceil(n_patients / 2)
    groups = rng.permutation([Technique.OT.value] * half + [Technique.TT.value] * (n_patients - half))
    clips: list[CohortClip] = []
    procedures: list[Procedure] = []
    for index in range(n_patients):
        if index and progress is not None:
            progress(1)
        technique = Technique(str(groups[index]))
        patient_rng = np.random.default_rng([seed, 200, index])
        identity = _identity(seed, index, patient_rng)
        sides = [[Side.RIGHT], [Side.LEFT], [Side.RIGHT, Side.LEFT]][
            int(patient_rng.choice(3, p=[0.4, 0.4, 0.2]))
        ]
        chinese = bool(patient_rng.random() < 0.1)
        clock = dt.datetime(2024, 3, 4, 8, 30) + dt.timedelta(
            days=index, minutes=float(patient_rng.uniform(0.0, 240.0))
        )
        series_number = 0
        for side in sides:
            mean_s, sd_s = PROCEDURE_TIME_S[technique]
            procedure_s = float(
                np.clip(patient_rng.normal(mean_s, sd_s), mean_s - 3 * sd_s, mean_s + 3 * sd_s)
            )
            steps = _steps(technique, side, with_l3=bool(patient_rng.random() < 0.25), chinese=chinese)
            events = timeline(frames)
            visible_s = float(events.needle_visible or 0) * frame_time_ms / 1000.0
            end_s = float(events.injection_end or 0) * frame_time_ms / 1000.0
            starts = np.linspace(0.0, procedure_s + visible_s - end_s, len(steps))
            puncture = clock
            for k, step in enumerate(steps):
                if technique is Technique.TT or k == 0:
                    series_number += 1  # TT: a series per puncture; OT: one series per side
                instance = k + 1 if technique is Technique.OT else 1
                content = puncture + dt.timedelta(seconds=float(starts[k]) - visible_s)
                spec = ClipSpec(
                    level=step.level,
                    side=side,
                    technique=technique,
                    needle_view=step.view,
                    needle_angle_deg=float(patient_rng.uniform(30.0, 45.0)),
                    oblique=step.oblique,
                    frames=frames,
                    rows=rows,
                    cols=cols,
                    frame_time_ms=frame_time_ms,
                    encoding=encoding,
                    identity=identity,
                    descriptions=_descriptions(technique, step, chinese, patient_rng),
                    study_date=content.date(),
                    content_time=content.time(),
                    series_number=series_number,
                    instance_number=instance,
                )
                clip_seed = int(patient_rng.integers(0, 2**31))
                stem = f"{step.level.value}_{side.laterality}_s{series_number}_i{instance}"
                dcm, truth = write_clip(spec, out_dir / identity.patient_id, clip_seed, stem=stem)
                study_uid = str(clip_uids(spec, clip_seed)[0])
                clips.append(
                    CohortClip(
                        patient_id=identity.patient_id,
                        study_uid=study_uid,
                        side=side.value,
                        technique=technique.value,
                        level=step.level.value,
                        needle_view=step.view.value,
                        series_number=series_number,
                        instance_number=instance,
                        content_datetime=content.isoformat(),
                        seed=clip_seed,
                        dcm=str(dcm.relative_to(out_dir)),
                        truth=str(truth.relative_to(out_dir)),
                    )
                )
            procedures.append(Procedure(clips[-1].study_uid, side, technique, procedure_s))
            clock = puncture + dt.timedelta(seconds=procedure_s + float(patient_rng.uniform(120.0, 300.0)))
    write_outcomes(out_dir / "outcomes.csv", procedures, np.random.default_rng([seed, 300]))
    manifest = {
        "seed": seed,
        "n_patients": n_patients,
        "procedures": [
            {
                "study_uid": p.study_uid,
                "side": p.side.value,
                "technique": p.technique.value,
                "procedure_time_s": round(p.procedure_time_s, 3),
            }
            for p in procedures
        ],
        "clips": [asdict(clip) for clip in clips],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    if progress is not None:
        progress(1)  # the last patient, with the outcomes and the manifest
    logger.info("cohort of %d patients, %d clips in %s", n_patients, len(clips), out_dir)
    return clips


def _identity(seed: int, index: int, rng: np.random.Generator) -> PatientIdentity:
    birth = dt.date(1945, 1, 1) + dt.timedelta(days=int(rng.integers(0, 45 * 365)))
    return PatientIdentity(
        patient_name=f"PHANTOM^C{seed % 1000:03d}P{index + 1:03d}",
        patient_id=f"PHC{seed % 1000:03d}{index + 1:04d}",
        birth_date=birth,
        sex=str(rng.choice(["F", "M"])),
        accession=f"ACC{seed % 1000:03d}{index + 1:05d}",
        institution="Phantom General Hospital",
        operator=str(rng.choice(["WANG^LI", "CHEN^YU", "SMITH^JO"])),
    )


def _steps(technique: Technique, side: Side, *, with_l3: bool, chinese: bool) -> list[_Step]:
    s = side.laterality
    steps = [_Step(SpinalLevel.L3, NeedleView.IN_PLANE, False, f"L3 MB {s}")] if with_l3 else []
    steps.append(_Step(SpinalLevel.L4, NeedleView.IN_PLANE, False, f"L4/5 MBB {s}"))
    if technique is Technique.TT:
        steps.append(_Step(SpinalLevel.L5, NeedleView.OUT_OF_PLANE, False, f"L5 DR {s} OOP"))
    else:
        steps.append(_Step(SpinalLevel.L5, NeedleView.IN_PLANE, True, f"L5 DR one-needle {s}"))
    if chinese:
        side_zh = "右" if side is Side.RIGHT else "左"
        how = "一针两点 平面内" if technique is Technique.OT else "两针两点"
        steps = [
            _Step(st.level, st.view, st.oblique, f"腰椎 {st.level.value} {side_zh} {how}") for st in steps
        ]
    return steps


def _descriptions(technique: Technique, step: _Step, chinese: bool, rng: np.random.Generator) -> Descriptions:
    if chinese:
        return Descriptions(
            study="腰椎 脊神经后内侧支阻滞",
            series=step.series,
            performed_step="超声引导 腰脊神经后内侧支阻滞",
            protocol="MSK 脊柱",
            body_part="LSPINE",
            character_set="ISO_IR 192",
        )
    performed = {
        Technique.TT: ["MBB two-needle TT", "L4-5 MBB 2 punctures", "MBB TT"],
        Technique.OT: ["MBB one-needle OT", "L4-5 MBB single puncture", "MBB OT"],
    }[technique]
    return Descriptions(
        study=str(rng.choice(["US Lumbar MBB", "Lumbar facet block", "US GUIDED MBB"])),
        series=step.series,
        performed_step=str(rng.choice(performed)),
        protocol="MSK Spine",
        body_part="LSPINE",
    )


def write_outcomes(path: Path, procedures: list[Procedure], rng: np.random.Generator) -> None:
    """Write ``outcomes.csv``: one row per procedure, VAS 0-10 and ODI % before, 1 h, 2 weeks.

    Parameters
    ----------
    path : Path
        CSV file to write (columns :data:`OUTCOME_COLUMNS`).
    procedures : list of Procedure
        Rows, in order.
    rng : numpy.random.Generator
        Scores and which procedures are effective.

    Notes
    -----
    Exactly ``round(rate × n)`` procedures per technique are effective (VAS
    fell by ≥ 50 % and ODI by ≥ 40 % at 2 weeks), with the rates of
    :data:`EFFECTIVE_RATE`; TT groups of 4 or more get ``round(n × 2/32)``
    (at least one) adverse events.
    """
    effective: dict[int, bool] = {}
    adverse: set[int] = set()
    for technique in (Technique.OT, Technique.TT):
        rows = [i for i, p in enumerate(procedures) if p.technique is technique]
        n_effective = round(EFFECTIVE_RATE[technique] * len(rows))
        chosen = set(rng.permutation(rows)[:n_effective].tolist()) if rows else set()
        effective.update({i: i in chosen for i in rows})
        if technique is Technique.TT and len(rows) >= 4:
            count = max(1, round(len(rows) * 2 / 32))
            adverse.update(rng.permutation(rows)[:count].tolist())
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(OUTCOME_COLUMNS)
        for i, procedure in enumerate(procedures):
            vas_pre = int(np.clip(round(rng.normal(6.6, 0.9)), 4, 9))
            odi_pre = int(np.clip(round(rng.normal(21.0, 4.0)), 10, 35)) * 2
            vas_1h = round(vas_pre * rng.uniform(0.15, 0.4))
            odi_1h = 2 * round(odi_pre * rng.uniform(0.3, 0.6) / 2)
            if effective[i]:
                vas_2w = min(round(vas_pre * rng.uniform(0.1, 0.45)), vas_pre // 2)
                odi_2w = min(2 * round(odi_pre * rng.uniform(0.2, 0.55) / 2), 2 * math.floor(odi_pre * 0.3))
            else:
                vas_2w = max(round(vas_pre * rng.uniform(0.55, 0.9)), vas_pre // 2 + 1)
                odi_2w = 2 * round(odi_pre * rng.uniform(0.65, 0.95) / 2)
            writer.writerow(
                [
                    procedure.study_uid,
                    procedure.side.value,
                    vas_pre,
                    vas_1h,
                    vas_2w,
                    odi_pre,
                    odi_1h,
                    odi_2w,
                    ADVERSE_EVENT if i in adverse else "",
                ]
            )
