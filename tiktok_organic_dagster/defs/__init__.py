"""The Dagster definitions: the only part of the package that imports dagster.

``resources`` (thin resources building the plain clients), ``assets``, ``checks``, ``metadata``, ``jobs``
(and schedules), ``sensors``, and ``definitions`` (the lazy code-location entry).
"""
