"""napari plugin for reviewing ultrasound-guided spinal injection clips.

Contributions are declared in ``napari.yaml`` so nothing here imports napari
until napari needs it. :mod:`annotator.frames` decodes clips lazily without
napari; :mod:`annotator.reader` turns them into napari layer data.
"""

from annotator.errors import AnnotatorError, ClipOpenError, FrameDecodeError
from annotator.frames import ClipFrames

__all__ = ["AnnotatorError", "ClipFrames", "ClipOpenError", "FrameDecodeError"]
