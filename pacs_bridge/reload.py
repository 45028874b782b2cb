"""SIGHUP for the receiver's access control: allow-list, permissions, move destinations, destination table.

``usarchive serve`` re-reads its configuration file on SIGHUP
(:class:`pacs_bridge.forward.cli.ReloadOnHangup`). Besides the forwarding
routes, the Query/Retrieve side takes from the re-read file: who may
associate and do what (``[server] allow``, ``allow_any``,
``[server.permissions]``), which C-MOVE destinations each calling AE may name
(``[server.move_destinations]``) and the destination table itself
(``[destinations.NAME]``, shared with forwarding). Everything is read and
checked first (:meth:`AccessReload.prepare`); a file that does not parse, or
that would leave the receiver open to nobody, is logged and the running
tables stay. Associations already established keep the presentation contexts
they negotiated; each new association and each C-MOVE / C-GET request sees
the new tables.

The rest of ``[server]`` (address, port, AE title, TLS, limits, timeouts)
is bound when the receiver starts: a change there is logged as needing a
restart and not applied. Command-line flags (``--allow``, ``--allow-any``,
``--aet``, ...) keep overriding the file after a reload, as at start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from archive.forward.config import Destination, ForwardSettings
from pacs_bridge.config import BridgeSettings

LOGGER = logging.getLogger(__name__)

#: The fields of :class:`~pacs_bridge.config.BridgeSettings` a reload replaces.
RELOADED_FIELDS = ("allow", "allow_any", "permissions", "move_destinations")


class AccessControlled(Protocol):
    """What a reload needs of the receiver (:class:`pacs_bridge.server.BridgeServer`)."""

    @property
    def settings(self) -> BridgeSettings:
        """The running settings."""
        ...

    def reload_access(self, settings: BridgeSettings, destinations: Mapping[str, Destination]) -> None:
        """Serve new associations and retrieves with these access tables and destinations."""
        ...


def reloaded_settings(running: BridgeSettings, reread: BridgeSettings) -> tuple[BridgeSettings, list[str]]:
    """The running settings with the access tables of ``reread``, and the fields that need a restart.

    Raises
    ------
    archive.errors.ConfigError
        If the new tables admit nobody (as at start: :meth:`BridgeSettings.check_access_policy`).
    """
    updated = dataclasses.replace(running, **{name: getattr(reread, name) for name in RELOADED_FIELDS})
    updated.check_access_policy()
    restart = [
        field.name
        for field in dataclasses.fields(BridgeSettings)
        if field.name not in RELOADED_FIELDS and getattr(running, field.name) != getattr(reread, field.name)
    ]
    return updated, restart


class AccessReload:
    """The receiver's part of a SIGHUP reload.

    Parameters
    ----------
    server : AccessControlled
        The running receiver.
    reread : callable
        Reads the configuration file again with the command line's overrides
        (``pacs_bridge.config.load_settings``); raises ``ConfigError`` on a bad file.
    """

    def __init__(self, server: AccessControlled, reread: Callable[[], BridgeSettings]) -> None:
        self.server = server
        self.reread = reread

    def prepare(self, forward: ForwardSettings) -> Callable[[], None]:
        """Read and check the new tables; the returned callable applies them.

        Parameters
        ----------
        forward : ForwardSettings
            The re-read forwarding sections, whose destination table C-MOVE uses.

        Raises
        ------
        archive.errors.ConfigError
            When the file's ``[server]`` tables are invalid (nothing is applied).
        """
        settings, restart = reloaded_settings(self.server.settings, self.reread())
        if restart:
            LOGGER.warning(
                "SIGHUP: [server] %s changed; these take effect at the next start (restart usarchive serve)",
                ", ".join(restart),
            )

        def apply() -> None:
            self.server.reload_access(settings, forward.destinations)
            LOGGER.info(
                "SIGHUP: access control and C-MOVE destinations re-read (%d allowed, %d permission "
                "entries, destinations: %s)",
                len(settings.allow),
                len(settings.permissions),
                ", ".join(sorted(d.ae_title for d in forward.destinations.values())) or "none",
            )

        return apply
