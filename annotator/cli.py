"""``usarchive annotate``: open clips (or a phantom sample) in napari with the time overlay.

Registered in the ``usarchive.commands`` entry-point group, so the root
command (``archive.cli.main``) finds it without depending on this package.
The review widget and archive browsing come later; this opens files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from annotator.overlay import attach_time_overlay
from annotator.reader import is_dicom_file
from annotator.samples import SAMPLE_SPECS, sample_path

if TYPE_CHECKING:
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)

#: npe2 plugin name (``annotator/napari.yaml``).
PLUGIN = "usarchive"


def open_clips(viewer: ViewerModel, paths: Sequence[Path]) -> tuple[list[Any], Callable[[], None] | None]:
    """Open DICOM clips in a viewer with this plugin's reader; show the last one's time.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        Or a :class:`napari.Viewer`.
    paths : sequence of Path
        DICOM files.

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
    return layers, attach_time_overlay(viewer, layers[-1])


@click.command("annotate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--sample",
    type=click.Choice(sorted(SAMPLE_SPECS)),
    help="Also open a phantom sample clip (generated into the cache directory on first use).",
)
def annotate(paths: tuple[Path, ...], sample: str | None) -> None:
    """Open DICOM clips in napari, in millimetres, with the current frame's time."""
    not_dicom = [str(p) for p in paths if not is_dicom_file(p)]
    if not_dicom:
        raise click.BadParameter(
            f"expected DICOM files (*.dcm, *.dicom or 'DICM' at byte 128), but got {', '.join(not_dicom)}",
            param_hint="PATHS",
        )
    if not paths and sample is None:
        raise click.UsageError("give one or more DICOM files, or --sample NAME")
    files = [*paths, *([sample_path(sample)] if sample is not None else [])]

    import napari
    from napari.errors import ReaderPluginError

    viewer = napari.Viewer(title="usarchive")
    try:
        open_clips(viewer, files)
    except ReaderPluginError as exc:
        viewer.close()
        cause = exc.__cause__ or exc
        raise click.ClickException(f"cannot open the clip: {cause}") from exc
    logger.info("opened %d clip(s) in napari", len(files))
    napari.run()
