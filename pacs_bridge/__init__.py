"""usarchive's DICOM receiver (``usarchive serve``): pynetdicom into the archive.

Depends on ``archive``; nothing depends on it. Import the pieces from their
modules: :mod:`pacs_bridge.config` (settings), :mod:`pacs_bridge.server`
(:class:`~pacs_bridge.server.BridgeServer`), :mod:`pacs_bridge.cli` (the
``serve`` command).
"""
