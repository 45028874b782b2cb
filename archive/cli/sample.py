"""``usarchive sample``: write synthetic clips (the phantom) with ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archive.cli.common import progress_bar
from archive.errors import ArchiveError, PhantomError
from archive.model import NeedleView, Side, SpinalLevel, Technique

if TYPE_CHECKING:
    from archive.worklist.model import WorklistEntry

_ENCODINGS = ("explicit-mono", "explicit-rgb", "jpeg-baseline")


@click.group("sample")
def sample() -> None:
    """Synthetic ultrasound-guided spinal injection clips with JSON ground truth."""


@sample.command("generate")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; same arguments, same files.")
@click.option(
    "--cohort",
    "n_patients",
    type=int,
    default=None,
    help="Write a cohort of N patients (TT/OT, sides, L3-L5) with outcomes.csv and manifest.json "
    "instead of one clip.",
)
@click.option(
    "--level",
    type=click.Choice(["L3", "L4", "L5", "C4"]),
    default="L4",
    show_default=True,
    help="Target level (C4 = C4/5).",
)
@click.option("--side", type=click.Choice(["left", "right"]), default="right", show_default=True)
@click.option("--technique", type=click.Choice(["TT", "OT"]), default="TT", show_default=True)
@click.option(
    "--needle-view", type=click.Choice(["in-plane", "out-of-plane"]), default="in-plane", show_default=True
)
@click.option(
    "--angle", "angle_deg", type=float, default=35.0, show_default=True, help="Needle angle to skin, deg."
)
@click.option("--danger", is_flag=True, help="Draw the spinal canal as danger structure (needs --level C4).")
@click.option(
    "--frames", type=int, default=None, help="Frames (1 = single-frame image; default 40, cohort 24)."
)
@click.option("--rows", type=int, default=None, help="Image rows (default 400, cohort 200).")
@click.option("--cols", type=int, default=None, help="Image columns (default 560, cohort 260).")
@click.option("--depth", "depth_mm", type=float, default=None, help="Imaging depth, mm (default 80; C4: 50).")
@click.option(
    "--frame-time", "frame_time_ms", type=float, default=None, help="Frame Time, ms (default 66, cohort 100)."
)
@click.option(
    "--encoding",
    type=click.Choice(_ENCODINGS),
    default="explicit-mono",
    show_default=True,
    help="Transfer syntax.",
)
@click.option(
    "--worklist",
    "worklist_entry",
    type=int,
    default=None,
    help="A worklist entry of the archive (usarchive worklist add): the clip carries it as a scanner that "
    "picked it copies it (patient, accession, study, Request Attributes Sequence); its first level, side "
    "and technique are drawn. The header's free text stays that of --level/--technique.",
)
@click.pass_context
def generate(
    ctx: click.Context,
    out: Path,
    seed: int,
    n_patients: int | None,
    level: str,
    side: str,
    technique: str,
    needle_view: str,
    angle_deg: float,
    danger: bool,
    frames: int | None,
    rows: int | None,
    cols: int | None,
    depth_mm: float | None,
    frame_time_ms: float | None,
    encoding: str,
    worklist_entry: int | None,
) -> None:
    """Write one clip (OUT/<level>_<side>_<seed>.dcm + .json) or, with --cohort, a cohort into OUT."""
    from archive.phantom import ClipSpec, Descriptions, Encoding, write_clip
    from archive.phantom.cohort import generate_cohort

    try:
        if n_patients is not None:
            with progress_bar(click.get_current_context(), "generating", n_patients) as advance:
                clips = generate_cohort(
                    out,
                    n_patients,
                    seed,
                    rows=rows or 200,
                    cols=cols or 260,
                    frames=frames or 24,
                    frame_time_ms=frame_time_ms or 100.0,
                    encoding=Encoding(encoding),
                    progress=advance,
                )
            click.echo(
                f"wrote {len(clips)} clips of {n_patients} patients, outcomes.csv and manifest.json to {out}"
            )
            return
        entry = _worklist_entry(ctx, worklist_entry) if worklist_entry is not None else None
        lvl = SpinalLevel(level) if entry is None else entry.procedure.levels[0]
        drawn_side = Side(side) if entry is None else entry.procedure.side
        drawn_technique = Technique(technique)
        if entry is not None and entry.procedure.technique in (Technique.TT, Technique.OT):
            drawn_technique = entry.procedure.technique
        cervical = lvl is SpinalLevel.C4
        spec = ClipSpec(
            level=lvl,
            side=drawn_side,
            technique=drawn_technique,
            worklist=entry,
            needle_view=NeedleView(needle_view),
            needle_angle_deg=angle_deg,
            danger=danger,
            oblique=drawn_technique is Technique.OT and lvl is SpinalLevel.L5,
            frames=frames or 40,
            rows=rows or 400,
            cols=cols or 560,
            depth_mm=depth_mm or (50.0 if cervical else 80.0),
            frame_time_ms=frame_time_ms or 66.0,
            encoding=Encoding(encoding),
            descriptions=Descriptions(
                study="US Cervical MBB" if cervical else "US Lumbar MBB",
                series=f"{'C4/5' if cervical else level} MBB {Side(side).laterality}",
                performed_step=f"MBB {technique}",
                body_part="CSPINE" if cervical else "LSPINE",
            ),
        )
        dcm, truth = write_clip(spec, out, seed)
    except PhantomError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"dicom": str(dcm), "truth": str(truth)}))


@sample.command("samples")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def samples(out: Path) -> None:
    """Write the fixed sample set (the content of sample_dicom/) and its README.md into OUT."""
    from archive.phantom.samples import write_samples

    for dcm, _ in write_samples(out):
        click.echo(str(dcm))


def _worklist_entry(ctx: click.Context, pk: int) -> WorklistEntry:
    """Entry ``pk`` of the archive the configuration names (refused when there is no archive)."""
    from archive.cli.common import open_archive

    with open_archive(ctx) as archive:
        try:
            return archive.worklist.get(pk)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
