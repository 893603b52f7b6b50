"""Every error the lake raises (one module, like delta-rs's ``deltalake.exceptions``)."""

from __future__ import annotations


class DeltaCatalogError(Exception):
    """Base class for catalog errors (configuration, names, data, commits, time travel)."""


class CatalogConfigError(DeltaCatalogError, ValueError):
    """A setting or name is invalid; the message names the setting."""


class CommitConflictError(DeltaCatalogError):
    """Concurrent writers kept winning the commit race until the retry bound."""


class VersionNotAvailableError(DeltaCatalogError):
    """The requested version/time is outside retention (log or data files already removed)."""
