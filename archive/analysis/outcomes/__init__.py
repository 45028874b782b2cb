"""Procedures' clinical outcomes: model and CSV reading, index tables, matching, store, template.

:mod:`~archive.analysis.outcomes.model` holds :class:`Outcome` and the CSV
reader; :mod:`~archive.analysis.outcomes.sql` the index tables;
:mod:`~archive.analysis.outcomes.match` finds the procedure a row belongs to;
:mod:`~archive.analysis.outcomes.store` is :attr:`archive.archive.Archive.outcomes`;
:mod:`~archive.analysis.outcomes.template` writes the CSV to fill in.
"""
