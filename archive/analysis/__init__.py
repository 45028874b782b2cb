"""Analysis of archived clips: geometry, metrics, statistics, outcomes, audit and proposals.

Everything here reads what the archive holds and derives numbers from it;
nothing here writes to the store.
"""
