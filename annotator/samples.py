"""napari sample data: phantom clips from :mod:`archive.phantom`, opened with the reader.

Each sample is generated once into a cache directory (``$XDG_CACHE_HOME/usarchive/samples``
or ``~/.cache/usarchive/samples``) under a name that includes a digest of its
specification, so a changed specification makes a new file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from annotator.reader import LayerData, notify_frame_error, read_clip
from archive.model import NeedleView, Side, SpinalLevel, Technique
from archive.phantom import ClipSpec, Descriptions, Encoding, write_clip

logger = logging.getLogger(__name__)

#: Seed of every sample clip (the phantom is deterministic).
SAMPLE_SEED = 20240506

#: Sample clips by key: what ``napari.yaml`` lists under sample_data.
SAMPLE_SPECS: dict[str, ClipSpec] = {
    "lumbar_l4_in_plane": ClipSpec(
        level=SpinalLevel.L4,
        side=Side.RIGHT,
        technique=Technique.TT,
        needle_view=NeedleView.IN_PLANE,
        frames=60,
        encoding=Encoding.JPEG_BASELINE,
        descriptions=Descriptions(series="L4 MBB R in-plane"),
    ),
    "lumbar_l5_oblique_ot": ClipSpec(
        level=SpinalLevel.L5,
        side=Side.LEFT,
        technique=Technique.OT,
        needle_view=NeedleView.IN_PLANE,
        oblique=True,
        frames=60,
        encoding=Encoding.EXPLICIT_RGB,
        descriptions=Descriptions(series="L5 DR L OT oblique"),
    ),
    "cervical_c4_danger": ClipSpec(
        level=SpinalLevel.C4,
        side=Side.RIGHT,
        technique=Technique.UNKNOWN,
        needle_view=NeedleView.IN_PLANE,
        danger=True,
        frames=40,
        depth_mm=50.0,
        encoding=Encoding.EXPLICIT_MONO,
        descriptions=Descriptions(
            study="US Cervical block",
            series="C4/5 block R",
            performed_step="Cervical nerve block",
            body_part="CSPINE",
        ),
    ),
}


def sample_cache_dir() -> Path:
    """Where sample clips are written: ``$XDG_CACHE_HOME/usarchive/samples`` or ``~/.cache/...``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "usarchive" / "samples"


def sample_path(key: str, cache_dir: Path | None = None) -> Path:
    """The DICOM file of sample ``key``, generating it on first use.

    Parameters
    ----------
    key : str
        One of :data:`SAMPLE_SPECS`.
    cache_dir : Path, optional
        Defaults to :func:`sample_cache_dir`.

    Raises
    ------
    KeyError
        If ``key`` is not a sample.
    """
    if key not in SAMPLE_SPECS:
        raise KeyError(f"sample: expected one of {sorted(SAMPLE_SPECS)}, but got {key!r}")
    spec = SAMPLE_SPECS[key]
    digest = hashlib.sha256(f"{spec!r}|{SAMPLE_SEED}".encode()).hexdigest()[:12]
    stem = f"{key}_{digest}"
    directory = cache_dir or sample_cache_dir()
    path = directory / f"{stem}.dcm"
    if not path.is_file():
        logger.info("generating sample clip %s into %s", key, directory)
        written, _ = write_clip(spec, directory, SAMPLE_SEED, stem=stem)
        path = written
    return path


def _sample(key: str) -> list[LayerData]:
    return [read_clip(sample_path(key), on_error=notify_frame_error)]


def lumbar_l4_in_plane() -> list[LayerData]:
    """Sample: L4 medial branch block, in-plane needle, JPEG Baseline (YBR_FULL_422)."""
    return _sample("lumbar_l4_in_plane")


def lumbar_l5_oblique_ot() -> list[LayerData]:
    """Sample: L5 dorsal ramus, oblique view of the OT technique, RGB."""
    return _sample("lumbar_l5_oblique_ot")


def cervical_c4_danger() -> list[LayerData]:
    """Sample: C4/5 cervical block with the spinal canal near the path, MONOCHROME2."""
    return _sample("cervical_c4_danger")
