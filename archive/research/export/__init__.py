"""Exports of clips and their review results to other formats (DICOM directory, DICOM SR, HDF5)."""
