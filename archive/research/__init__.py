"""Research outputs of the archive: de-identification and the exports (HDF5, DICOM, SR).

:mod:`archive.research.deid` removes or replaces what identifies a patient;
:mod:`archive.research.export` writes de-identified data sets for research.
"""
