"""The time overlay's background box, left alone while only the text changes.

napari 0.9.2 redraws a text overlay in two costly ways each time its text
changes (``VispyCanvasOverlay._on_box_change`` in ``napari._vispy.overlays.base``):

* It sets the width, height, centre and colour of the box (a vispy
  ``Rectangle``) whether they changed or not. Each setter rebuilds the
  rectangle's mesh, and vispy's ``MeshVisual`` then gives its program a new
  colour-transform function, so the program is compiled and linked again at
  the next draw: one ``glLinkProgram`` per frame step.
* The overlay sits in the bottom right corner, placed from the text's size in
  fractional pixels. vispy keeps the position in float32, so the float64
  position napari computes never equals the stored one: every placement
  "moves" the overlay and the canvas draw asks for a second draw.

:class:`SteadyBoxTextOverlay` is napari's ``VispyTextOverlay`` with one
method changed: the overlay's size is rounded up to whole pixels (so its
position is exact in float32) and the box is rebuilt only when something it is
drawn from has changed (size, padding, colours, visibility, order, parent).
Over a 1,000-frame clip the time label takes five widths (the digits of the
time and frame number are of equal width), so the box is rebuilt five times
instead of a thousand. What is drawn is the same, to within the rounding of
the box to whole pixels.

:func:`steady_box` gives the viewer's current text overlay visuals this
behaviour. It reaches into napari's private canvas; where that is not there
(another napari version, a viewer without a window) it changes nothing and
the overlay works as before, only slower.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari.viewer import ViewerModel

logger = logging.getLogger(__name__)

try:
    from napari._vispy.overlays.text import VispyTextOverlay
except ImportError:  # another napari version: steady_box changes nothing
    VispyTextOverlay = None


def _colour_key(colour: Any) -> tuple[float, ...] | None:
    return None if colour is None else tuple(float(c) for c in colour)


if VispyTextOverlay is not None:

    class SteadyBoxTextOverlay(VispyTextOverlay):  # type: ignore[misc]
        """napari's viewer text overlay visual, rebuilding its box only on a real change."""

        x_size: float
        y_size: float
        #: What the box was last drawn from (``None``: not drawn yet).
        _box_drawn_from: tuple[Any, ...] | None = None

        def _box_inputs(self) -> tuple[Any, ...]:
            """Everything napari's ``_on_box_change`` reads."""
            return (
                bool(self.overlay.box),
                bool(self._should_be_visible()),
                self.node.parent,
                tuple(float(p) for p in self.viewer.canvas.overlay_tiling.padding),
                self.x_size,
                self.y_size,
                _colour_key(self.overlay.box_color),
                _colour_key(self.viewer.canvas.background_color),
                self.node.order,
                self.node.transform,
            )

        def _on_box_change(self) -> None:
            self.x_size = float(math.ceil(self.x_size))
            self.y_size = float(math.ceil(self.y_size))
            inputs = self._box_inputs()
            if inputs == self._box_drawn_from:
                return
            super()._on_box_change()
            self._box_drawn_from = inputs


def steady_box(viewer: ViewerModel, overlay: Any) -> int:
    """Make the visuals of a viewer text overlay rebuild their box only on a real change.

    Parameters
    ----------
    viewer : napari.viewer.ViewerModel
        A :class:`napari.Viewer` with a window; a viewer model without one is
        left as it is.
    overlay : napari.components.overlays.TextOverlay
        The viewer's text overlay (see :func:`annotator.overlay.text_overlay`),
        already visible (napari makes its visuals when it is first shown).

    Returns
    -------
    int
        How many of the overlay's visuals now keep their box (one per grid
        cell); 0 when napari has none of the expected internals.
    """
    if VispyTextOverlay is None:
        return 0
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    visuals = getattr(getattr(qt_viewer, "canvas", None), "_viewer_overlay_to_visual", {})
    steady = 0
    for visual in visuals.get(overlay, ()):
        if type(visual) is VispyTextOverlay:
            visual.__class__ = SteadyBoxTextOverlay
            visual._on_position_change()
        steady += isinstance(visual, SteadyBoxTextOverlay)
    if not steady:
        logger.debug("the text overlay's box is left to napari (no visual of the expected kind)")
    return steady
