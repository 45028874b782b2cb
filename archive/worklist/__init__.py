"""The Modality Worklist and Modality Performed Procedure Steps (MPPS) of the archive.

``model`` (scheduled procedures, codes, statuses), ``sql`` (tables, migration 10),
``store`` (:class:`~archive.worklist.store.WorklistStore`, reached as
``Archive.worklist``), ``steps`` (N-CREATE / N-SET), ``query`` (the MWL
attribute map on the one matcher of :mod:`archive.query`), ``dataset`` (an
entry as an MWL response identifier and what a scanner copies into its images),
``csvfile`` (the import CSV).
"""
