"""Leave the visuals of empty mark layers out of the canvas draw.

The review widget's five mark layers (:class:`~annotator.widget.layers.MarkLayers`)
and three proposal layers (:class:`~annotator.widget.proposals.ProposalLayers`)
are empty on most frames of most clips, yet napari draws every shown layer's
visual in every canvas draw: about 2 ms per layer and frame step with software
OpenGL, for no pixel. :class:`EmptyMarkSkip` hides the vispy node of a mark
layer while the layer holds nothing and the reviewer is not editing it, and
shows it again as soon as either changes. It never touches ``layer.visible``:
the layer list's eye toggles stay the reviewer's, and a layer they hid stays
hidden.

A layer is drawn when it is shown (``layer.visible``) and

* it holds something: a shape, a point, or a painted (non-zero) pixel; or
* it is the active layer in a mode other than ``pan_zoom`` (adding, painting,
  selecting, transforming), so napari's drawing aids on it (a path being
  drawn, a selection box, the polygon of the polygon tool) are drawn as before.

An empty layer draws no pixel, so the canvas shows the same either way (napari
itself hides the visual of an image or labels layer whose slice is empty the
same way). The visuals are reached through napari's private canvas
(``layer_to_visual``, by :func:`annotator._napari_compat.layer_visuals`, gated
on the tested napari version); where that is not there, or with
``enabled=False``, nothing is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from annotator import _napari_compat

if TYPE_CHECKING:
    from napari.layers import Layer
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)

#: Layer events after which a layer may have become empty or not, or shown or hidden.
LAYER_EVENTS = ("data", "set_data", "paint", "labels_update", "visible", "mode")


def holds_marks(layer: Layer) -> bool:
    """Whether a Shapes, Points or Labels layer holds anything to draw.

    Parameters
    ----------
    layer : napari.layers.Layer
        A Shapes layer (any shape), a Points layer (any point) or a Labels
        layer (any non-zero pixel).

    Returns
    -------
    bool
        ``True`` when the layer holds a shape, a point or a painted pixel.
    """
    from napari.layers import Labels

    if isinstance(layer, Labels):
        return bool(np.any(np.asarray(layer.data)))
    return len(layer.data) > 0


class EmptyMarkSkip:
    """Keeps the vispy nodes of empty, unedited mark layers out of the canvas draw.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        A :class:`napari.Viewer` with a window (without one, nothing is skipped).
    layers : sequence of napari.layers.Layer
        The mark layers (Shapes, Points, Labels), already in the viewer.
    enabled : bool, optional
        ``False``: skip nothing, every layer drawn as napari draws it
        (``napari_patches=False``).
    """

    def __init__(self, viewer: ViewerModel, layers: Sequence[Layer], *, enabled: bool = True) -> None:
        self.viewer = viewer
        self.layers = tuple(layers)
        self._disconnected = False
        self._visuals: dict[Any, Any] = (
            _napari_compat.layer_visuals(viewer) if _napari_compat.patches_enabled(enabled) else {}
        )
        for layer in self.layers:
            for name in LAYER_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    # Last, after napari's own visual has followed the event (it may show the node).
                    emitter.connect(self._on_layer_event, position="last")
        viewer.layers.selection.events.active.connect(self._on_active_change, position="last")
        self.refresh()

    def is_drawn(self, layer: Layer) -> bool:
        """Whether ``layer``'s visual should be drawn (see the module doc)."""
        if not layer.visible:
            return False
        editing = layer is self.viewer.layers.selection.active and str(layer.mode) != "pan_zoom"
        return editing or holds_marks(layer)

    def refresh(self, layer: Layer | None = None) -> None:
        """Show or hide the visual of ``layer`` (of every mark layer when ``None``)."""
        for each in self.layers if layer is None else (layer,):
            visual = self._visuals.get(each)
            if visual is None:  # removed from the viewer, or no canvas
                continue
            _napari_compat.set_node_drawn(visual, self.is_drawn(each))

    def _on_layer_event(self, event: Any) -> None:
        source = getattr(event, "source", None)
        self.refresh(source if source in self.layers else None)

    def _on_active_change(self, event: Any = None) -> None:
        self.refresh()

    def disconnect(self) -> None:
        """Stop following the layers; their visuals are left as napari keeps them (idempotent)."""
        if self._disconnected:
            return
        self._disconnected = True
        for layer in self.layers:
            for name in LAYER_EVENTS:
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self._on_layer_event)
        self.viewer.layers.selection.events.active.disconnect(self._on_active_change)
        for layer in self.layers:
            visual = self._visuals.get(layer)
            if visual is not None:
                _napari_compat.set_node_drawn(visual, bool(layer.visible))
