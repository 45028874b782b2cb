"""``usarchive web``: the archive served over HTTP as DICOMweb (PS3.18 QIDO-RS, WADO-RS, STOW-RS).

Importing this package loads nothing heavy: the index's migration reads
:mod:`archive.web.tokens.sql`. The application is :func:`archive.web.app.create_app`;
:mod:`archive.web.server` runs it under uvicorn. See docs/dicomweb.md.
"""
