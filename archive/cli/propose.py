"""``usarchive propose``: propose needle and spread marks on a clip and store them as its proposal."""

from __future__ import annotations

import statistics

import click

from archive.cli.common import cli_state, full_uid, open_archive, print_json, progress_bar
from archive.cli.filters import FRAMES
from archive.errors import ArchiveError
from archive.review import PROPOSAL_REVIEWER
from archive.review.proposals import ProposalRun, frame_range


@click.command("propose")
@click.argument("uid")
@click.option(
    "--frames", "frames", type=FRAMES, help="1-based frame range FIRST-LAST (default: every frame)."
)
@click.option(
    "--approach",
    type=click.Choice(["in-plane", "out-of-plane"]),
    help="Needle view (default: the clip's indexed approach, else in-plane).",
)
@click.option("--by", help="Who runs it (default: [review] reviewer or USARCHIVE_REVIEWER).")
@click.pass_context
def propose_command(
    ctx: click.Context,
    uid: str,
    frames: tuple[int | None, int | None] | None,
    approach: str | None,
    by: str | None,
) -> None:
    """Propose needle and spread marks on clip UID and store them as its proposal (reviewer 'auto').

    The proposal is a draft annotation of the reserved reviewer 'auto', never
    counted as a review: accept it into your own annotation in the annotator or
    with 'usarchive review accept-proposal'. Frames are numbered from 1.
    """
    first, last = frames if frames is not None else (None, None)
    who = cli_state(ctx).person(by) or PROPOSAL_REVIEWER
    with open_archive(ctx) as archive:
        full = full_uid(archive, uid)
        try:
            start, end = frame_range(first, last, archive.proposals.frame_count(full))
            with progress_bar(ctx, "proposing", end - start + 1) as advance:
                shown = [0]

                def progress(done: int, total: int) -> None:
                    if done > shown[0]:
                        advance(done - shown[0])
                        shown[0] = done

                run = archive.proposals.run(
                    full, requested_by=who, first=start, last=end, approach=approach, progress=progress
                )
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json(run.to_json())
        return
    click.echo(_summary(run))


def _summary(run: ProposalRun) -> str:
    frames = run.proposal.frames
    found = [f for f in frames if f.tip is not None]
    scores = f", median score {statistics.median(f.score for f in found):.2f}" if found else ""
    pools = [s for s in run.proposal.spread if s.mask is not None]
    largest = max((s.area_mm2 for s in pools if s.area_mm2 is not None), default=None)
    area = f", largest {largest:.1f} mm²" if largest is not None else ""
    return (
        f"{run.sop_instance_uid}: proposal saved as version {run.saved.version} of reviewer "
        f"{PROPOSAL_REVIEWER!r} ({run.proposal.method}, {run.proposal.approach}, units "
        f"{run.proposal.units}): needle on {len(found)} of {len(frames)} frame(s){scores}; spread on "
        f"{len(pools)} frame(s){area}. Accept it with 'usarchive review accept-proposal "
        f"{run.sop_instance_uid}' or in the annotator."
    )
