"""The "Procedure review" dock widget of the napari plugin (issue 5: marking, readout, saving, review).

:class:`ProcedureReviewWidget` is contributed to napari in ``annotator/napari.yaml``;
``usarchive annotate UID`` opens it with the clip loaded.
"""

from __future__ import annotations

from annotator.widget.widget import ProcedureReviewWidget

__all__ = ["ProcedureReviewWidget"]
