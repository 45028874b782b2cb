"""Exports of clips and their review results to other formats (DICOM SR, HDF5)."""
