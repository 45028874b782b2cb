"""Every storage domain of an archive, one store object each: the one shape of the archive's API.

:class:`ArchiveDomains` is the part of :class:`archive.archive.Archive` that
hands out the domain stores; each is built over the archive's engine (and
its file store where it needs one) and keeps its model, store and SQL in one
subpackage (docs/architecture.md, "Domains: one shape each").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from archive.analysis.outcomes.store import OutcomeStore
from archive.forward.config import ForwardSettings
from archive.forward.store import ForwardStore
from archive.index.store import IndexStore
from archive.review.store import AnnotationStore
from archive.settings import ArchiveSettings
from archive.store import FileStore
from archive.web.tokens.store import TokenStore
from archive.worklist.store import WorklistStore

if TYPE_CHECKING:
    from archive.review.proposals import ProposalStore


class ArchiveDomains:
    """The domain stores of an open archive (``Archive.index``, ``.annotations``, ``.outcomes``, ...)."""

    settings: ArchiveSettings
    engine: Engine
    store: FileStore
    _index: IndexStore
    _forward_settings: ForwardSettings

    @property
    def annotations(self) -> AnnotationStore:
        """Reviewers' versioned annotations of the archived clips (see :mod:`archive.review.store`)."""
        return AnnotationStore(self.engine, four_eyes=self.settings.four_eyes)

    @property
    def proposals(self) -> ProposalStore:
        """Automatic needle and spread proposals of the clips (see :mod:`archive.review.proposals`)."""
        from archive.review.proposals import ProposalStore  # loads scikit-image only when used

        return ProposalStore(self)

    @property
    def outcomes(self) -> OutcomeStore:
        """Procedures' clinical outcomes and their history (see :mod:`archive.analysis.outcomes.store`)."""
        return OutcomeStore(self.engine)

    @property
    def worklist(self) -> WorklistStore:
        """Scheduled procedures (Modality Worklist) and performed steps (:mod:`archive.worklist.store`)."""
        return WorklistStore(self.engine, self.settings.worklist)

    @property
    def tokens(self) -> TokenStore:
        """Bearer tokens of ``usarchive web`` (see :mod:`archive.web.tokens.store`)."""
        return TokenStore(self.engine)

    @property
    def index(self) -> IndexStore:
        """Finding, describing, counting and tagging indexed instances (:mod:`archive.index.store`)."""
        return self._index

    @property
    def forward_settings(self) -> ForwardSettings:
        """The destination table and routes ingest and :attr:`forward` use (see :meth:`reload_forward`)."""
        return self._forward_settings

    def reload_forward(self, settings: ForwardSettings) -> None:
        """Use new destinations and routes from now on (a forwarder's SIGHUP); ingest routes with them."""
        self._forward_settings = settings

    @property
    def forward(self) -> ForwardStore:
        """The forwarding outbox: tasks, claims, retries (see :mod:`archive.forward.store`)."""
        return ForwardStore(
            self.engine, self._forward_settings, self.store, self.settings.data_dir / "outbox"
        )
