"""Errors of the sync layer: the batch is refused before anything is written."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiktok_organic_dagster.sync.checks import CheckResult


class ApiFieldError(ValueError):
    """The API answered a value of the wrong type for a documented field: name it instead of a bare Arrow error."""


class BatchCheckFailed(Exception):
    """The batch failed a blocking check; nothing was written."""

    def __init__(self, message: str, results: list[CheckResult]) -> None:
        super().__init__(message)
        self.results = results
