"""``usarchive annotate``: open clips (or a phantom sample) in napari with the time overlay.

Registered in the ``usarchive.commands`` entry-point group, so the root
command (``archive.cli.main``) finds it without depending on this package.
With the SOP Instance UID of an archived clip it opens the Procedure review
widget (:mod:`annotator.widget`) with that clip loaded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from annotator.overlay import attach_time_overlay
from annotator.reader import is_dicom_file
from annotator.samples import SAMPLE_SPECS, sample_path
from archive.archive import Archive
from archive.errors import ArchiveError
from archive.settings import ArchiveSettings

if TYPE_CHECKING:
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)

#: npe2 plugin name (``annotator/napari.yaml``).
PLUGIN = "usarchive"


def open_clips(
    viewer: ViewerModel, paths: Sequence[Path], *, napari_patches: bool = True
) -> tuple[list[Any], Callable[[], None] | None]:
    """Open DICOM clips in a viewer with this plugin's reader; show the last one's time.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        Or a :class:`napari.Viewer`.
    paths : sequence of Path
        DICOM files.
    napari_patches : bool, optional
        ``False``: napari's stock slider and overlay (:mod:`annotator._napari_compat`).

    Returns
    -------
    layers : list of napari.layers.Image
        One per file, in order.
    detach : callable or None
        Stops the time overlay (``None`` when nothing was opened).
    """
    layers: list[Any] = []
    for path in paths:
        layers.extend(viewer.open(path, plugin=PLUGIN))
    if not layers:
        return layers, None
    return layers, attach_time_overlay(viewer, layers[-1], napari_patches=napari_patches)


# --- review widget (annotator/widget) ---------------------------------------------------------


def open_review(
    viewer: Any, settings: ArchiveSettings, sop_instance_uid: str, *, napari_patches: bool = True
) -> Any:
    """Dock the Procedure review widget in ``viewer`` and open an archived clip in it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    settings : ArchiveSettings
        The archive holding the clip (and the reviewer's annotations).
    sop_instance_uid : str
        The clip.
    napari_patches : bool, optional
        ``False``: the widget leaves napari's internals alone (:mod:`annotator._napari_compat`).

    Returns
    -------
    ProcedureReviewWidget
        The docked widget, with the clip loaded.
    """
    from annotator.widget import ProcedureReviewWidget

    widget = ProcedureReviewWidget(viewer, archive=Archive.open(settings), napari_patches=napari_patches)
    viewer.window.add_dock_widget(widget, name="Procedure review", area="right")
    widget.open_clip(sop_instance_uid)
    return widget


def _split_clips(clips: tuple[str, ...]) -> tuple[list[Path], list[str]]:
    """Existing files are paths; anything else must be the SOP Instance UID of an archived clip."""
    paths = [Path(c) for c in clips if Path(c).exists()]
    uids = [c for c in clips if not Path(c).exists()]
    return paths, uids


# --- end review widget ------------------------------------------------------------------------


@click.command("annotate")
@click.argument("clips", nargs=-1)
@click.option(
    "--sample",
    type=click.Choice(sorted(SAMPLE_SPECS)),
    help="Also open a phantom sample clip (generated into the cache directory on first use).",
)
@click.option(
    "--prefer-reader",
    is_flag=True,
    help="Make napari itself prefer the usarchive reader for *.dcm, *.dicom, DICOMDIR and folders "
    "(saved in napari's settings), then exit.",
)
@click.option(
    "--napari-patches/--no-napari-patches",
    default=None,
    help="Reach into napari's internals for the 1-based slider and faster frame steps (tested napari "
    "minor version only); off: napari's stock behaviour. Default: [review] napari_patches (true).",
)
@click.pass_context
def annotate(
    ctx: click.Context,
    clips: tuple[str, ...],
    sample: str | None,
    prefer_reader: bool,
    napari_patches: bool | None,
) -> None:
    """Open a clip of the archive (by SOP Instance UID) in the review widget, or DICOM files in napari.

    CLIPS are DICOM files or one SOP Instance UID of an archived clip; with a
    UID, napari opens with the Procedure review widget and that clip loaded.
    """
    if prefer_reader:
        from annotator.reader_preference import prefer_usarchive_reader

        preference = prefer_usarchive_reader()
        mine = sorted(pattern for pattern, plugin in preference.items() if plugin == PLUGIN)
        click.echo(f"napari now opens {', '.join(mine)} with the {PLUGIN} reader")
        return
    if napari_patches is None:
        from archive.cli.common import cli_state

        napari_patches = cli_state(ctx).settings.napari_patches
    paths, uids = _split_clips(clips)
    if len(uids) > 1 or (uids and (paths or sample)):
        raise click.BadParameter(
            f"expected DICOM files or one SOP Instance UID of an archived clip, but got "
            f"{', '.join(uids)} (no such files); open one archived clip at a time",
            param_hint="CLIPS",
        )
    if uids:
        _review(ctx, uids[0], napari_patches=napari_patches)
        return
    not_dicom = [str(p) for p in paths if not is_dicom_file(p)]
    if not_dicom:
        raise click.BadParameter(
            f"expected DICOM files (*.dcm, *.dicom or 'DICM' at byte 128), but got {', '.join(not_dicom)}",
            param_hint="CLIPS",
        )
    if not paths and sample is None:
        raise click.UsageError("give an archived clip's SOP Instance UID, DICOM files, or --sample NAME")
    files = [*paths, *([sample_path(sample)] if sample is not None else [])]

    import napari
    from napari.errors import ReaderPluginError

    viewer = napari.Viewer(title="usarchive")
    try:
        open_clips(viewer, files, napari_patches=napari_patches)
    except ReaderPluginError as exc:
        viewer.close()
        cause = exc.__cause__ or exc
        raise click.ClickException(f"cannot open the clip: {cause}") from exc
    logger.info("opened %d clip(s) in napari", len(files))
    napari.run()


def _review(ctx: click.Context, sop_instance_uid: str, *, napari_patches: bool) -> None:
    """Start napari with the review widget and one archived clip."""
    from archive.cli.common import cli_state, open_archive

    settings = cli_state(ctx).settings
    with open_archive(ctx) as archive:  # refuses a directory holding no archive
        with contextlib.suppress(ArchiveError):  # a unique prefix names the clip; else refused below
            sop_instance_uid = archive.index.resolve_uid(sop_instance_uid)
        if archive.index.show(sop_instance_uid) is None:
            raise click.BadParameter(
                f"expected a DICOM file or the SOP Instance UID of an archived clip, but "
                f"{sop_instance_uid!r} is neither; list archived clips with 'usarchive find'",
                param_hint="CLIPS",
            )

    import napari

    viewer = napari.Viewer(title="usarchive review")
    open_review(viewer, settings, sop_instance_uid, napari_patches=napari_patches)
    logger.info("opened %s in the review widget", sop_instance_uid)
    napari.run()
