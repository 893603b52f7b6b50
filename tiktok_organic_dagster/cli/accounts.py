"""``tiktok-organic-accounts``: onboard and offboard the accounts of a multi-account source, no redeploy.

``add`` stores the account's refresh token (read from the environment variable it names, never from argv)
and registers its partition; ``list`` shows accounts, token days left and last sync (no secrets);
``remove`` revokes the authorization, deletes the account's rows from every table of the source, its token
entry and its partition. ``--purge`` also vacuums, so the deleted rows leave storage and not only the
current version (older versions of every account stop being readable: time travel ends at the purge).

The Dagster instance is ``$DAGSTER_HOME``'s, the deployment's: the partitions live there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TextIO

from pydantic import ValidationError

from tiktok_organic_dagster.lake import DeltaCatalog
from tiktok_organic_dagster.names import (
    ACCOUNT_COLUMN,
    API_BASE_URL_ENV,
    COMMIT_PREFIX,
    DEFAULT_API_BASE_URL,
    DELTA_ROOT_ENV,
    account_token_key,
)
from tiktok_organic_dagster.settings import AccountSettings, SettingsError, SourceSettings, load_settings
from tiktok_organic_dagster.settings.load import setting_message
from tiktok_organic_dagster.tiktok import ReauthorizationRequired, TikTokClient, TikTokError, TokenStoreError
from tiktok_organic_dagster.tiktok.revoke import revoke
from tiktok_organic_dagster.tiktok.token_store import open_token_store
from tiktok_organic_dagster.tiktok.tokens import TokenEntry


class AccountsError(Exception):
    """A usage or state problem; the message says what to do."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiktok-organic-accounts", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, what in (("add", "store an account's token and register it"), ("list", "show the accounts"),
                       ("remove", "revoke, delete the account's rows, token and partition")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--source", required=True, help="a source with `accounts` in the settings file")
        cmd.add_argument("--token-store", default=None, help="token store path or URL (default: "
                         "$TIKTOK_TOKEN_STORE, then the default location)")
        if name != "list":
            cmd.add_argument("--account", required=True, help="account name (lowercase letters, digits, '_')")
        if name == "add":
            cmd.add_argument("--refresh-token-env", required=True,
                             help="environment variable holding the account's refresh token (never argv)")
        if name in ("list", "remove"):
            cmd.add_argument("--delta-root", default=None, help=f"default: ${DELTA_ROOT_ENV}")
        if name == "remove":
            cmd.add_argument("--purge", action="store_true", help="also vacuum: deleted rows leave storage")
            cmd.add_argument("--skip-revoke", action="store_true",
                             help="do not call TikTok (the authorization is already gone)")
    return p


def _source(name: str) -> SourceSettings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise AccountsError(str(exc)) from None
    source = next((s for s in settings.sources if s.name == name), None)
    if source is None:
        raise AccountsError(f"no source '{name}' in the settings (sources: "
                            f"{', '.join(s.name for s in settings.sources)}); set TIKTOK_ORGANIC_CONFIG")
    if not source.partitioned:
        raise AccountsError(f"source '{name}' is a single-account source: add `accounts: []` to it in the "
                            "settings file to partition its tables by account")
    return source


def _account(name: str) -> str:
    try:
        return AccountSettings(name=name).name
    except ValidationError as exc:
        raise AccountsError(setting_message(exc.errors()[0], ["name"], AccountSettings)) from None


def _catalog(source: SourceSettings, root: str | None) -> DeltaCatalog:
    return DeltaCatalog(root or os.environ.get(DELTA_ROOT_ENV) or None, metadata_prefix=COMMIT_PREFIX,
                        delta_log_retention_days=source.delta_log_retention_days)


def _tables(catalog: DeltaCatalog, source: SourceSettings) -> list[str]:
    uris = []
    for stream, cfg in source.streams.items():
        table = source.table_name(stream)
        uris += [catalog.table_uri(cfg.layer, cfg.folder, table), catalog.table_uri(cfg.layer, cfg.folder,
                                                                                      table + "_history")]
    return [u for u in uris if catalog.exists(u)]


def add(args: argparse.Namespace, out: TextIO) -> None:
    source, account = _source(args.source), _account(args.account)
    token = os.environ.get(args.refresh_token_env, "")
    if not token:
        raise AccountsError(f"{args.refresh_token_env} is empty: put the account's refresh token in it (it is "
                            "never read from the command line), or use tiktok-organic-authorize --source "
                            f"{source.name} --account {account}")
    key = account_token_key(source.name, account)
    store = open_token_store(args.token_store)
    with store.locked():
        store.put(key, TokenEntry(refresh_token=token, updated_at=time.time()))
    from tiktok_organic_dagster.defs.accounts import pool_advice, register_account

    added = register_account(source.name, account)
    print(f"account '{account}' of source '{source.name}': token stored in {store.describe(key)}; partition "
          f"{'registered' if added else 'was already registered'}", file=out)
    advice = pool_advice(source)
    if advice:
        print(f"note: {advice}", file=out)


def _days_left(entry: TokenEntry | None) -> str:
    if entry is None:
        return "no token"
    if entry.refresh_expires_at is None:
        return "unknown"
    return f"{(entry.refresh_expires_at - time.time()) / 86400:.0f}"


def _last_sync(catalog: DeltaCatalog, tables: list[str], account: str) -> str:
    times = [t for u in tables if (t := catalog.last_commit_time(u, partition=(ACCOUNT_COLUMN, account)))]
    return max(times).strftime("%Y-%m-%d %H:%M UTC") if times else "never"


def list_accounts(args: argparse.Namespace, out: TextIO) -> None:
    from tiktok_organic_dagster.defs.accounts import registered_accounts

    source = _source(args.source)
    registered = registered_accounts(source.name)
    listed = [a.name for a in source.accounts or ()]
    store = open_token_store(args.token_store)
    catalog = _catalog(source, args.delta_root)
    tables = _tables(catalog, source)
    rows = [("account", "registered", "in settings", "token days left", "last sync")]
    for account in sorted(set(registered) | set(listed)):
        try:
            days = _days_left(store.get(account_token_key(source.name, account)))
        except TokenStoreError as exc:
            days = f"unreadable ({str(exc)[:60]})"
        rows.append((account, "yes" if account in registered else "no", "yes" if account in listed else "no",
                     days, _last_sync(catalog, tables, account)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _revoke(source: SourceSettings, account: str, token_store: str | None, out: TextIO) -> None:
    creds = source.credentials
    client_id, secret = os.environ.get(creds.client_id_env, ""), os.environ.get(creds.client_secret_env, "")
    if not client_id or not secret:
        raise AccountsError(f"{creds.client_id_env} and {creds.client_secret_env} must be set to revoke the "
                            "authorization (or pass --skip-revoke if it is already gone); nothing was changed")
    entry = source.account(account)
    env = entry.refresh_token_env if entry else None
    client = TikTokClient(client_id=client_id, client_secret=secret,
                          refresh_token=os.environ.get(env, "") if env else "", refresh_token_env=env or "",
                          api_base_url=os.environ.get(API_BASE_URL_ENV, DEFAULT_API_BASE_URL),
                          token_store_path=token_store, token_store_key=account_token_key(source.name, account),
                          max_retries=2)
    try:
        revoke(client)
        print(f"revoked the authorization of account '{account}'", file=out)
    except ReauthorizationRequired as exc:  # the token is dead already: nothing left to revoke
        print(f"the account's token no longer works ({exc.reason}); nothing to revoke", file=out)
    except TikTokError as exc:
        raise AccountsError(f"revoking account '{account}' failed: {exc}. Nothing was deleted; run remove again, "
                            "or pass --skip-revoke to delete without revoking") from None
    finally:
        client.close()


def remove(args: argparse.Namespace, out: TextIO) -> None:
    from tiktok_organic_dagster.defs.accounts import registered_accounts, unregister_account

    source, account = _source(args.source), _account(args.account)
    registered_accounts(source.name)  # the instance is reachable before anything changes
    if not args.skip_revoke:
        _revoke(source, account, args.token_store, out)
    catalog = _catalog(source, args.delta_root)
    info = {f"{COMMIT_PREFIX}operation": "remove_account", f"{COMMIT_PREFIX}account": account}
    for uri in _tables(catalog, source):
        result = catalog.delete_partition(uri, ACCOUNT_COLUMN, account, commit_info=info)
        print(f"{uri}: deleted {result.deleted} row(s)", file=out)
        if args.purge:
            catalog.purge(uri)
            print(f"{uri}: purged (vacuumed every unreferenced file)", file=out)
    store = open_token_store(args.token_store)
    with store.locked():
        had_token = store.delete(account_token_key(source.name, account))
    had_partition = unregister_account(source.name, account)
    print(f"account '{account}': token entry {'removed' if had_token else 'absent'}, partition "
          f"{'removed' if had_partition else 'absent'} "
          f"({datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')})", file=out)
    if source.account(account) is not None:
        print(f"note: '{account}' is still listed in the settings file; remove it there too, or the accounts "
              "sensor registers it again when its token reappears", file=out)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    from tiktok_organic_dagster.defs.accounts import InstanceUnavailable

    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    try:
        {"add": add, "list": list_accounts, "remove": remove}[args.command](args, out)
    except (AccountsError, TokenStoreError, InstanceUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
