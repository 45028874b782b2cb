"""Errors raised by the annotator package.

Messages say what was expected, what was found and what to do. Callers catch
:class:`AnnotatorError` for anything this package raises on purpose.
"""

from __future__ import annotations

from pathlib import Path


class AnnotatorError(Exception):
    """Base class of every error the annotator raises deliberately."""


class ClipOpenError(AnnotatorError):
    """A file cannot be opened as a clip (no pixel data, unsupported layout)."""


class FrameDecodeError(AnnotatorError):
    """One frame of a clip cannot be decoded.

    Parameters
    ----------
    path : Path
        The clip's file.
    index : int
        0-based frame index.
    cause : str
        What went wrong, usually the decoder's own message.
    """

    def __init__(self, path: Path, index: int, cause: str) -> None:
        self.path = path
        self.index = index
        self.cause = cause
        super().__init__(
            f"{path.name}: expected frame {index + 1} (index {index}) to decode, but {cause}; "
            "the frame is shown as black: the file is damaged or its transfer syntax is not "
            "supported, re-export it from the scanner or the PACS"
        )
