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
behaviour, and :meth:`SteadyBox.restore` takes it back. Both live in
:mod:`annotator._napari_compat`, with every other reach into napari's
internals, gated on the tested napari version; where the version or the
internals differ (or ``enabled=False``) nothing changes and the overlay works
as napari draws it, only slower.
"""

from __future__ import annotations

from annotator._napari_compat import SteadyBox, SteadyBoxTextOverlay, steady_box

__all__ = ["SteadyBox", "SteadyBoxTextOverlay", "steady_box"]
