"""``usarchive review``: status, history, JSON export and import of annotations; accepting proposals."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from archive.cli.common import cli_state, open_archive, plain_output, print_json, print_table
from archive.cli.filters import FRAMES
from archive.errors import AnnotationError, ArchiveError
from archive.index.engine import read_transaction
from archive.index.uid_lookup import AmbiguousUidError, UnknownUidError, resolve_uid_prefix
from archive.model import ReviewStatus
from archive.review import ClipAnnotation, canonical_json, from_json
from archive.review.store import AnnotationStore

_STATUSES = [status.value for status in ReviewStatus]


@contextmanager
def _store(ctx: click.Context) -> Iterator[AnnotationStore]:
    """The archive's annotation store; archive errors become clean CLI errors."""
    with open_archive(ctx) as archive:
        try:
            yield archive.annotations
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc


class _Batch:
    """Reports the items of a many-argument command: text as each is done, JSON as one list.

    Used as a context manager around the loop; on leaving it the JSON list of
    the items done so far is printed (also when an item failed, before the error).
    """

    def __init__(self, ctx: click.Context, total: int) -> None:
        self._json = bool(cli_state(ctx).json_output)
        self._total = total
        self._documents: list[dict[str, Any]] = []

    def __enter__(self) -> _Batch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._json:
            print_json(self._documents)

    @contextmanager
    def item(self, name: str) -> Iterator[None]:
        """Process one item: an archive error stops the command, naming ``name``."""
        try:
            yield
        except ArchiveError as exc:
            message = f"{name}: {exc}"
            if self._total > 1:
                done = len(self._documents)
                message += (
                    f" (stopped here: {done} done before it, {self._total - done - 1} after it not processed)"
                )
            raise click.ClickException(message) from exc

    def done(self, document: dict[str, Any], line: str) -> None:
        """Report one item done: ``line`` now in text mode, ``document`` in the JSON list."""
        self._documents.append(document)
        if not self._json:
            click.echo(line)


def _full_uid(store: AnnotationStore, text: str) -> str:
    """A whole UID, or the one UID ``text`` is a unique prefix of."""
    with read_transaction(store.engine) as connection:
        try:
            return resolve_uid_prefix(connection, text)
        except AmbiguousUidError as exc:
            raise click.ClickException(str(exc)) from exc
        except UnknownUidError:
            return text  # matches nothing: the store says what it expected


def _identity(ctx: click.Context, given: str | None, option: str) -> str:
    name: str | None = cli_state(ctx).person(given)
    if not name:
        raise click.UsageError(
            f"expected your user name, but none is configured: pass {option} NAME, set reviewer under "
            "[review] in usarchive.toml, or set USARCHIVE_REVIEWER"
        )
    return name


@click.group("review")
def review() -> None:
    """Reviewers' annotations: status, history, JSON export and import, accepting proposals."""


@review.command("accept-proposal")
@click.argument("uid")
@click.option(
    "--frames", type=FRAMES, help="1-based frame range FIRST-LAST to accept (default: every frame)."
)
@click.option("--reviewer", help="Whose annotation receives the marks (default: --by, [review] reviewer).")
@click.option("--by", help="Who accepts (default: [review] reviewer or USARCHIVE_REVIEWER).")
@click.pass_context
def accept_proposal_command(
    ctx: click.Context,
    uid: str,
    frames: tuple[int | None, int | None] | None,
    reviewer: str | None,
    by: str | None,
) -> None:
    """Copy clip UID's proposal (from 'usarchive propose') into your annotation as keyframes.

    The proposed needle and spread on each frame of the range become keyframes
    of the reviewer's own annotation, saved as its next version; frames
    without a proposal keep the reviewer's marks. Only the reviewer's
    annotation counts as a review.
    """
    author = _identity(ctx, by, "--by")
    owner = reviewer or author
    first, last = frames if frames is not None else (None, None)
    with open_archive(ctx) as archive:
        try:
            full = _full_uid(archive.annotations, uid)
            accepted = archive.proposals.accept(full, owner, first=first, last=last, saved_by=author)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from exc
    if cli_state(ctx).json_output:
        print_json(accepted.to_json())
        return
    outcome = "saved as" if accepted.saved.created else "identical to"
    click.echo(
        f"{accepted.saved.sop_instance_uid} {accepted.saved.reviewer}: accepted proposal version "
        f"{accepted.proposal_version} (needle on {len(accepted.needle_frames)} frame(s), spread on "
        f"{len(accepted.spread_frames)}); {outcome} version {accepted.saved.version}"
    )


@review.command("list")
@click.option("--status", type=click.Choice(_STATUSES), help="Only annotations in this review status.")
@click.option("--reviewer", help="Only this reviewer's annotations.")
@click.option("--proposals", is_flag=True, help="Also list the automatic proposals (reviewer 'auto').")
@click.pass_context
def list_command(ctx: click.Context, status: str | None, reviewer: str | None, proposals: bool) -> None:
    """List each reviewer's annotation of each clip with its status, newest change first."""
    with _store(ctx) as store:
        rows = store.list_reviews(status=status, reviewer=reviewer, proposals=proposals)
    if cli_state(ctx).json_output:
        print_json([row.to_json() for row in rows])
        return
    header = ("SOP Instance UID", "reviewer", "status", "version", "updated (UTC)")
    print_table(
        ctx,
        header,
        [
            (
                row.sop_instance_uid,
                row.reviewer,
                row.status.value,
                str(row.latest_version),
                row.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            )
            for row in rows
        ],
    )
    click.echo(f"{len(rows)} annotation(s)", err=plain_output(ctx))  # piped: stdout holds only the rows


@review.command("status")
@click.argument("uids", metavar="UID...", nargs=-1, required=True)
@click.option("--reviewer", required=True, help="Whose annotation.")
@click.option("--set", "new_status", required=True, type=click.Choice(_STATUSES), help="The new status.")
@click.option("--comment", help="Why (required for needs-rework).")
@click.option("--by", help="Who changes the status (default: [review] reviewer or USARCHIVE_REVIEWER).")
@click.pass_context
def status_command(
    ctx: click.Context,
    uids: tuple[str, ...],
    reviewer: str,
    new_status: str,
    comment: str | None,
    by: str | None,
) -> None:
    """Change the review status of REVIEWER's annotation of each clip UID.

    The UIDs are processed in order, each change in its own transaction. The
    first one that fails stops the command (exit status 1): the changes already
    made are reported and kept, the error names the failing UID, and the UIDs
    after it are left unchanged.
    """
    author = _identity(ctx, by, "--by")
    with _Batch(ctx, len(uids)) as batch, _store(ctx) as store:
        for given in uids:
            with batch.item(given):
                uid = _full_uid(store, given)
                status = store.set_status(uid, reviewer, new_status, by=author, comment=comment)
            batch.done(
                {"sop_instance_uid": uid, "reviewer": reviewer, "status": status.value, "by": author},
                f"{uid} {reviewer}: {status.value} (by {author})",
            )


@review.command("history")
@click.argument("uid")
@click.option("--reviewer", help="Only this reviewer's annotation (default: every reviewer's).")
@click.pass_context
def history_command(ctx: click.Context, uid: str, reviewer: str | None) -> None:
    """Show the versions and review comments of the annotations of clip UID."""
    with _store(ctx) as store:
        uid = _full_uid(store, uid)
        names = [reviewer] if reviewer else store.reviewers(uid, proposals=True)
        entries = [(name, store.history(uid, name), store.comments(uid, name)) for name in names]
    if cli_state(ctx).json_output:
        print_json(
            [
                {
                    "reviewer": name,
                    "versions": [v.to_json() for v in versions],
                    "comments": [c.to_json() for c in comments],
                }
                for name, versions, comments in entries
            ]
        )
        return
    for name, versions, comments in entries:
        click.echo(f"reviewer {name}: {len(versions)} version(s)")
        for v in versions:
            parent = "-" if v.parent_version is None else str(v.parent_version)
            click.echo(
                f"  v{v.version} (from {parent}) {v.status.value:<12} "
                f"{v.saved_at.strftime('%Y-%m-%d %H:%M:%S')} by {v.saved_by} {v.content_sha256[:12]}"
            )
        for c in comments:
            change = ""
            if c.status_from is not None and c.status_to is not None:
                change = f"{c.status_from.value} -> {c.status_to.value} "
            click.echo(f"  comment by {c.author}: {change}{c.text or ''}".rstrip())


@review.command("export-json")
@click.argument("uid")
@click.option("--reviewer", required=True, help="Whose annotation.")
@click.option("--version", type=click.IntRange(min=1), help="Which version (default: the latest).")
@click.pass_context
def export_json_command(ctx: click.Context, uid: str, reviewer: str, version: int | None) -> None:
    """Print REVIEWER's annotation of clip UID as canonical JSON."""
    with _store(ctx) as store:
        loaded = store.load(_full_uid(store, uid), reviewer, version)
    sys.stdout.write(canonical_json(loaded.annotation) + "\n")


def _read_annotation(path: Path, reviewer: str, from_truth: bool) -> ClipAnnotation:
    """The annotation in ``path`` under ``reviewer``'s name; raises an ArchiveError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"expected a readable UTF-8 JSON file, but reading it failed ({exc})") from exc
    try:
        if from_truth:
            from archive.phantom.to_annotation import annotation_from_truth
            from archive.phantom.truth import GroundTruth

            return annotation_from_truth(GroundTruth.from_json(text), reviewer)
        annotation = from_json(json.loads(text))
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"expected annotation JSON, but it does not parse ({exc})") from exc
    return dataclasses.replace(annotation, reviewer=reviewer)


@review.command("import-json")
@click.argument(
    "files",
    metavar="FILE...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--reviewer", required=True, help="Whose annotation it becomes (replaces the file's reviewer).")
@click.option(
    "--base-version",
    type=click.IntRange(min=1),
    help="The stored version the file was edited from (omit for a first save; only with a single FILE).",
)
@click.option(
    "--from-phantom-truth",
    is_flag=True,
    help="Each FILE is a phantom ground truth (.json beside a synthetic clip): import what it marks.",
)
@click.pass_context
def import_json_command(
    ctx: click.Context,
    files: tuple[Path, ...],
    reviewer: str,
    base_version: int | None,
    from_phantom_truth: bool,
) -> None:
    """Save the annotation in each FILE (from export-json) as REVIEWER's next version.

    The FILEs are processed in order, each saved in its own transaction. The
    first one that fails stops the command (exit status 1): the saves already
    made are reported and kept, the error names the failing FILE, and the FILEs
    after it are not imported.
    """
    if base_version is not None and len(files) > 1:
        raise click.UsageError(
            f"expected a single FILE with --base-version (it is the version one annotation was "
            f"edited from), but {len(files)} were given: import them one at a time"
        )
    with _Batch(ctx, len(files)) as batch, _store(ctx) as store:
        for file in files:
            with batch.item(str(file)):
                annotation = _read_annotation(file, reviewer, from_phantom_truth)
                saved = store.save(annotation, base_version=base_version)
            outcome = "saved as" if saved.created else "identical to"
            batch.done(
                {
                    "sop_instance_uid": saved.sop_instance_uid,
                    "reviewer": saved.reviewer,
                    "version": saved.version,
                    "created": saved.created,
                    "status": saved.status.value,
                    "content_sha256": saved.content_sha256,
                },
                f"{saved.sop_instance_uid} {saved.reviewer}: {outcome} version {saved.version}",
            )
