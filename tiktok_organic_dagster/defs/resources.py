"""Thin Dagster resources that build the plain clients: the TikTok API client and the Delta catalog.

Like dagster-fivetran's resource, each hands out a plain object (``get_client()`` / ``get_catalog()``) and
owns its lifetime for one run. Log records of the plain layers (standard ``logging``) reach the run log
through a handler installed for the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field, PrivateAttr

from tiktok_organic_dagster.lake import CatalogConfigError, DeltaCatalog
from tiktok_organic_dagster.names import (
    CLIENT_ID_ENV,
    CLIENT_SECRET_ENV,
    COMMIT_PREFIX,
    DEFAULT_API_BASE_URL,
    DELTA_ROOT_ENV,
    REFRESH_TOKEN_ENV,
    TOKEN_STORE_ENV,
    account_token_key,
    accounts_partitions_name,
)
from tiktok_organic_dagster.tiktok import ReauthorizationRequired, TikTokClient, TokenStoreError
from tiktok_organic_dagster.tiktok.redaction import redact

PACKAGE_LOGGER = "tiktok_organic_dagster"


class _RunLogHandler(logging.Handler):
    """Forwards the package's log records (INFO and up) to Dagster's run log, redacted."""

    def __init__(self, log: logging.Logger | dg.DagsterLogManager) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.log(record.levelno, redact(record.getMessage()))
        except Exception:  # noqa: BLE001 - logging must never break a sync
            pass


@contextmanager
def forward_logs(context: dg.InitResourceContext) -> Iterator[None]:
    log = getattr(context, "log", None)
    if log is None:
        yield
        return
    handler = _RunLogHandler(log)
    package = logging.getLogger(PACKAGE_LOGGER)
    package.addHandler(handler)
    if package.level == logging.NOTSET or package.level > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)


def _failure(message: str) -> dg.Failure:
    """A pre-flight failure: one short message that names the setting and what to do; retrying cannot help."""
    return dg.Failure(description=message, allow_retries=False)


class TikTokClientResource(dg.ConfigurableResource):
    """Configuration of the TikTok client. Secrets are read at run time from the environment variables named
    by ``client_id_env`` / ``client_secret_env`` (never config, never shown), unless given as ``dg.EnvVar``.
    Each run starts with a pre-flight that needs no request: credentials, token store, a token to start from."""

    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    client_id_env: str = CLIENT_ID_ENV
    client_secret_env: str = CLIENT_SECRET_ENV
    refresh_token: str = Field(default="", repr=False)
    refresh_token_env: str = REFRESH_TOKEN_ENV
    api_base_url: str = DEFAULT_API_BASE_URL
    token_store_path: str | None = None
    token_store_key: str = "tiktok_organic"
    request_timeout_seconds: float = 30.0
    max_retries: int = 5
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0
    requests_per_minute: int = 600
    rate_window_seconds: float = 60.0
    query_parallelism: int = 8
    paging_parallelism: int = 24
    rate_pacing: bool = False  # pace evenly at requests_per_minute: this run's share of the app's limit
    # A multi-account source (its name): each run syncs one account, its partition key (or ``account``).
    accounts_source: str = ""
    account: str = ""
    # account -> the variable holding its first refresh token (read at run time, like the app's secrets)
    account_refresh_token_envs: dict[str, str] = {}

    _client: TikTokClient | None = PrivateAttr(default=None)
    _run_account: str = PrivateAttr(default="")

    @property
    def account_name(self) -> str | None:
        """The account this run syncs; None for a single-account source."""
        if not self.accounts_source:
            return None
        return self.account or self._run_account or None

    def _credentials(self) -> tuple[str, str, str]:
        """(token store key, refresh token, its variable) of this run's account or of the source."""
        account = self.account_name
        if account is None:
            return self.token_store_key, self.refresh_token, self.refresh_token_env
        env = self.account_refresh_token_envs.get(account, "")
        label = env or f"accounts[{account}].refresh_token_env"
        return account_token_key(self.accounts_source, account), os.environ.get(env, "") if env else "", label

    def build_client(self) -> TikTokClient:
        client_id = self.client_id or os.environ.get(self.client_id_env, "")
        client_secret = self.client_secret or os.environ.get(self.client_secret_env, "")
        key, refresh_token, refresh_env = self._credentials()
        return TikTokClient(
            client_id=client_id, client_secret=client_secret, refresh_token=refresh_token,
            refresh_token_env=refresh_env, api_base_url=self.api_base_url,
            token_store_path=self.token_store_path, token_store_key=key,
            request_timeout_seconds=self.request_timeout_seconds, max_retries=self.max_retries,
            backoff_base_seconds=self.backoff_base_seconds, backoff_max_seconds=self.backoff_max_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds, rate_window_seconds=self.rate_window_seconds,
            requests_per_minute=self.requests_per_minute, query_parallelism=self.query_parallelism,
            paging_parallelism=self.paging_parallelism, rate_pacing=self.rate_pacing,
        )

    def get_client(self) -> TikTokClient:
        """The run's client (one per run: the streams share its token refresh and counters)."""
        if self._client is None:
            self._client = self.build_client()
        return self._client

    def preflight(self, instance: dg.DagsterInstance | None = None) -> None:
        """Raise a short ``dg.Failure`` naming the setting when the run could not succeed; no API request."""
        source = self.accounts_source or self.token_store_key
        if self.accounts_source:
            self._check_account(instance)
        missing = [name for value, name in ((self.client_id, self.client_id_env),
                                            (self.client_secret, self.client_secret_env))
                   if not value and not os.environ.get(name)]
        if missing:
            raise _failure(f"TikTok source '{source}': {' and '.join(missing)} not set where this run executes. "
                           "Set the TikTok app's client key and secret as environment variables of the run "
                           "(they are never read from run config).")
        try:
            self.get_client().preflight()
        except ReauthorizationRequired as exc:
            raise _failure(str(exc)) from None
        except TokenStoreError as exc:
            origin = f" (from {TOKEN_STORE_ENV})" if not self.token_store_path and os.environ.get(TOKEN_STORE_ENV) \
                else ""
            raise _failure(f"TikTok source '{source}': {exc}{origin}. Fix the token store location or its "
                           "permissions, or point TIKTOK_TOKEN_STORE elsewhere.") from None

    def _check_account(self, instance: dg.DagsterInstance | None) -> None:
        account, source = self.account_name, self.accounts_source
        partitions = accounts_partitions_name(source)
        if account is None:
            raise _failure(f"TikTok source '{source}' is partitioned by account: run one account at a time "
                           "(`--partition <account>`, or the run tag dagster/partition).")
        if instance is not None and not instance.has_dynamic_partition(partitions, account):
            raise _failure(f"TikTok account '{account}' is not registered in source '{source}' (dynamic "
                           f"partitions '{partitions}'): add it with `tiktok-organic-accounts add --source {source} "
                           f"--account {account} --refresh-token-env <VAR>`, or list it under accounts in the "
                           "settings file.")

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[TikTokClientResource]:
        with forward_logs(context):
            try:
                run = getattr(context, "dagster_run", None)
                if run is not None:
                    self._run_account = run.tags.get("dagster/partition", "")
                if getattr(context, "run_id", None):
                    self.preflight(context.instance)
                yield self
            finally:
                if self._client is not None:
                    self._client.close()
                    self._client = None


class DeltaCatalogResource(dg.ConfigurableResource):
    """Configuration of the Delta catalog. ``root_uri`` unset: ``$TIKTOK_DELTA_ROOT``, else ``./data/lakehouse``
    (read at run time, so run workers may point elsewhere than the code server)."""

    root_uri: str | None = None
    delta_log_retention_days: int = 30
    storage_options: dict[str, str] = {}

    _run_id: str | None = PrivateAttr(default=None)

    def get_catalog(self) -> DeltaCatalog:
        return DeltaCatalog(
            self.root_uri or os.environ.get(DELTA_ROOT_ENV) or None,
            delta_log_retention_days=self.delta_log_retention_days, storage_options=self.storage_options,
            metadata_prefix=COMMIT_PREFIX, run_id=self._run_id,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run_id
        if context.run_id:  # a run (not a sensor tick) writes: find out now, before any API request
            self.preflight()

    def preflight(self) -> None:
        setting = "root_uri" if self.root_uri else DELTA_ROOT_ENV if os.environ.get(DELTA_ROOT_ENV) else None
        try:
            self.get_catalog().check_writable()
        except CatalogConfigError as exc:
            where = f" (set by {setting})" if setting else f" (the default; {DELTA_ROOT_ENV} is not set)"
            raise _failure(f"{str(exc)[:1].upper()}{str(exc)[1:]}{where}. Point {DELTA_ROOT_ENV} at a folder or "
                           "bucket prefix this run can write (object stores take credentials from AWS_*, "
                           "GOOGLE_* or AZURE_* variables).") from None
