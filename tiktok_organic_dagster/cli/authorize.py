"""``tiktok-organic-authorize``: one-time OAuth consent that seeds the token store.

Prints TikTok's authorize URL, reads the redirect URL (or bare code) you paste back, checks ``state``,
exchanges the code and writes the token store entry: to the local file (0600) or to the object-store prefix
configured (``--token-store`` / ``TIKTOK_TOKEN_STORE``: ``s3://``, ``gs://``, ``az://``, ``abfss://``),
encrypted when ``TIKTOK_TOKEN_STORE_KEY`` is set. The store and the key are checked before the URL is shown,
so a typo does not cost the single-use code. Tokens are never printed; the client secret is read from
``TIKTOK_CLIENT_SECRET`` only (no CLI flag, so it stays out of shell history).

``--source S --account A`` writes the entry of one account of a multi-account source
(``names.account_token_key``). With an API base URL other than TikTok's, ``GET <base>/_sandbox/state`` is
probed: if the bundled sandbox answers, its own consent page (``<base>/v2/auth/authorize/``) is the
authorize URL, so the whole flow runs locally (over HTTP only: product code never imports the sandbox).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence
from typing import TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tiktok_organic_dagster.names import (
    DEFAULT_API_BASE_URL,
    DEFAULT_SOURCE_NAME,
    TOKEN_STORE_ENV,
    TOKEN_STORE_KEY_ENV,
    account_token_key,
)
from tiktok_organic_dagster.tiktok import ReauthorizationRequired, TikTokClient, TikTokError, TokenStoreError
from tiktok_organic_dagster.tiktok.redaction import redact
from tiktok_organic_dagster.tiktok.streams import ALL_SCOPES
from tiktok_organic_dagster.tiktok.token_backends import TokenStoreBase, check_key
from tiktok_organic_dagster.tiktok.token_store import open_token_store, store_location

AUTHORIZE_URL = "https://www.tiktok.com/v2/auth/authorize/"
DEFAULT_SCOPES = ALL_SCOPES
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")  # source and account names (settings' rule)
SANDBOX_PROBE_TIMEOUT = 2.0  # seconds; a real API host that does not answer must not stall the command


def _after_store(source: str, account: str) -> None:
    """Called after the token of ``--account`` was stored: registers the account's partition on the
    deployment's instance (``$DAGSTER_HOME``), as ``tiktok-organic-accounts add`` does."""
    from tiktok_organic_dagster.defs.accounts import register_account

    register_account(source, account)


def sandbox_authorize_url(api_base_url: str, timeout: float = SANDBOX_PROBE_TIMEOUT) -> str | None:
    """The sandbox's consent page if ``api_base_url`` is the bundled sandbox, else None. TikTok's own API
    host is never probed; any other one gets one short ``GET /_sandbox/state``."""
    base = api_base_url.rstrip("/")
    if base == DEFAULT_API_BASE_URL.rstrip("/"):
        return None
    try:
        resp = requests.get(f"{base}/_sandbox/state", timeout=timeout)
        state = resp.json() if resp.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
    if isinstance(state, dict) and isinstance(state.get("client_id"), str) and "granted_scopes" in state:
        return f"{base}/v2/auth/authorize/"
    return None


def entry_key(key: str | None, source: str, account: str | None) -> str:
    """The token store entry: ``<source>.<account>`` with an account, else ``--key`` or the source name."""
    for flag, value in (("--source", source), ("--account", account)):
        if value is not None and not NAME_RE.match(value):
            raise ValueError(f"{flag} {value!r} is not a valid name: use lowercase letters, digits and '_', "
                             "starting with a letter (it names a token store entry and a partition)")
    if account is None:
        return key or source
    if key is not None:
        raise ValueError("--key and --account exclude each other: with --account the entry is "
                         f"'{account_token_key(source, account)}' (<source>.<account>)")
    return account_token_key(source, account)


def build_authorize_url(client_key: str, redirect_uri: str, state: str,
                        scopes: Sequence[str] = DEFAULT_SCOPES, authorize_url: str = AUTHORIZE_URL) -> str:
    """TikTok consent URL; scopes comma-separated (kept literal for readability)."""
    query = urlencode({"client_key": client_key, "scope": ",".join(scopes), "response_type": "code",
                       "redirect_uri": redirect_uri, "state": state}, safe=",")
    return f"{authorize_url}?{query}"


def parse_pasted(text: str, expected_state: str) -> str:
    """Return the authorization code from a pasted redirect URL (state verified) or a bare code."""
    text = text.strip()
    if not text:
        raise ValueError("nothing pasted: expected the redirect URL or the code")
    if "://" in text or text.startswith("?") or "code=" in text or "error=" in text:
        query = urlsplit(text).query if "://" in text else text.lstrip("?")
        params = parse_qs(query)
        if "error" in params:
            desc = params.get("error_description", [""])[0]
            raise ValueError(f"TikTok denied the authorization: {params['error'][0]} {desc}".strip())
        if params.get("state", [None])[0] != expected_state:
            raise ValueError("state mismatch: the pasted URL does not belong to this authorization attempt "
                             "(possible CSRF or a stale URL); start again")
        code = params.get("code", [""])[0]
        if not code:
            raise ValueError("the pasted URL has no code parameter")
        return code
    return text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiktok-organic-authorize",
        description="Authorize the TikTok app for an account and write the refresh token to the token store. "
                    "The client secret is read from TIKTOK_CLIENT_SECRET.",
    )
    p.add_argument("--client-id", default=os.environ.get("TIKTOK_CLIENT_ID"),
                   help="TikTok client key (default: $TIKTOK_CLIENT_ID)")
    p.add_argument("--redirect-uri", required=True, help="redirect URI registered for the app (exact match)")
    p.add_argument("--api-base-url", default=os.environ.get("TIKTOK_API_BASE_URL", DEFAULT_API_BASE_URL),
                   help="API host for the token exchange (default: $TIKTOK_API_BASE_URL or %(default)s)")
    p.add_argument("--authorize-url", default=None, help=argparse.SUPPRESS)  # default: TikTok's or the sandbox's
    p.add_argument("--token-store", default=None,
                   help="token store: a file, or an object-store prefix such as s3://bucket/tokens/ "
                        "(gs://, az://, abfss:// too; credentials from AWS_*/GOOGLE_*/AZURE_*) "
                        "(default: $TIKTOK_TOKEN_STORE, $DAGSTER_HOME/tiktok_token_store.json, "
                        "./.tiktok_tokens.json)")
    p.add_argument("--key", default=None,
                   help="token store entry (default: the source name; with --account <source>.<account>)")
    p.add_argument("--source", default=DEFAULT_SOURCE_NAME, help="source the account belongs to (%(default)s)")
    p.add_argument("--account", default=None,
                   help="account of a multi-account source: the entry becomes <source>.<account>")
    p.add_argument("--refresh-token-env", default="TIKTOK_REFRESH_TOKEN",
                   help="env var the source reads its refresh token from (for the instructions printed)")
    p.add_argument("--scopes", default=",".join(DEFAULT_SCOPES), help="comma-separated scopes to request")
    p.add_argument("--code", default=None,
                   help="authorization code (skips the prompt and the state check); write --code=VALUE, "
                        "as codes may start with '-'")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")
    return p


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None,
         stdout: TextIO | None = None) -> int:
    """Console entry point; returns the process exit code (0 ok, 1 failure, 2 usage)."""
    if argv is None:
        # Like the Dagster CLI, read ./.env so the secret can live there instead of the shell.
        from dotenv import load_dotenv

        load_dotenv(".env", override=False)
    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    inp = stdin or sys.stdin
    secret = os.environ.get("TIKTOK_CLIENT_SECRET", "")
    if not args.client_id:
        print("error: no client key; pass --client-id or set TIKTOK_CLIENT_ID", file=sys.stderr)
        return 2
    if not secret:
        print("error: set TIKTOK_CLIENT_SECRET in the environment (it is never accepted as a flag)",
              file=sys.stderr)
        return 2
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    try:
        key = entry_key(args.key, args.source, args.account)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        location = store_location(args.token_store)
        store = _checked_store(location, key)
    except TokenStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    authorize_url = args.authorize_url
    if authorize_url is None:
        authorize_url = sandbox_authorize_url(args.api_base_url, min(args.timeout, SANDBOX_PROBE_TIMEOUT))
        if authorize_url is not None:
            print(f"(The API at {args.api_base_url} is the bundled sandbox: its consent page lists its "
                  "accounts; approve as the one to authorize.)\n", file=out)
    state = secrets.token_urlsafe(24)
    print("1. Open this URL, log in to TikTok and approve the app:\n", file=out)
    print("   " + build_authorize_url(args.client_id, args.redirect_uri, state, scopes,
                                      authorize_url or AUTHORIZE_URL), file=out)
    try:
        if args.code:
            code = args.code
        else:
            print("\n2. Paste the full URL you were redirected to (or just the code), then press Enter:",
                  file=out, flush=True)
            code = parse_pasted(inp.readline(), state)
    except ValueError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1

    # The client does the exchange: same retries, redaction and store writing as the runtime path.
    client = TikTokClient(client_id=args.client_id, client_secret=secret,
                          refresh_token=os.environ.get(args.refresh_token_env, ""),
                          api_base_url=args.api_base_url, token_store_path=location,
                          token_store_key=key, request_timeout_seconds=args.timeout, max_retries=2)
    try:
        entry = client.exchange_authorization_code(code, args.redirect_uri)
    except TokenStoreError as exc:
        print(f"error: the code was exchanged but the tokens could not be stored: {exc}; fix that and "
              "authorize again (the code is single-use)", file=sys.stderr)
        return 1
    except ReauthorizationRequired as exc:  # invalid_grant on an authorization code
        print(f"error: TikTok rejected the authorization code for source '{key}' ({exc.reason}). Codes are "
              "single-use and expire within minutes: open the authorize URL again, approve, and paste the new "
              "redirect URL (run this command again to get a fresh URL).", file=sys.stderr)
        return 1
    except TikTokError as exc:
        print(f"error: token exchange failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.account is not None:
        try:
            _after_store(args.source, args.account)  # looked up at call time, so a replacement takes effect
        except Exception as exc:  # the token is stored; say what is left to do instead of a traceback
            print(f"error: the token of account '{args.account}' was stored as {key}, but registering the "
                  f"account failed: {redact(str(exc))}", file=sys.stderr)
            return 1

    granted = set(entry.scopes)
    missing = [s for s in scopes if granted and s not in granted]
    days = (entry.refresh_expires_at - time.time()) / 86400 if entry.refresh_expires_at else None
    is_file = store.exclusive_lock  # the local file (flock); otherwise an object-store prefix
    how = "encrypted with " + TOKEN_STORE_KEY_ENV if store.codec.encrypting else "in clear"
    print(f"\nAuthorized. {store.describe(key)} written{' (mode 0600)' if is_file else ''}, {how}.",
          file=out)
    print(f"   open_id: {entry.open_id or 'unknown'}; granted scopes: {', '.join(entry.scopes) or 'unknown'}"
          + (f"; refresh token valid for {days:.0f} days" if days is not None else ""), file=out)
    if missing:
        print(f"   WARNING: not granted: {', '.join(missing)} — streams needing them will fail with "
              "MissingScopeError.", file=out)
    env_set = bool(os.environ.get(args.refresh_token_env))
    print("\nNext steps:", file=out)
    print(f"   - Leave {args.refresh_token_env} unset or empty: the client reads the refresh token from this "
          "store entry and keeps it rotated there.", file=out)
    if env_set:
        print(f"     ({args.refresh_token_env} is set in this shell; its current value is recorded as "
              "superseded, but a different stale value elsewhere would override the store: unset it there.)",
              file=out)
    if args.token_store or os.environ.get(TOKEN_STORE_ENV) is None:
        print(f"   - Make the runs use the same store: export {TOKEN_STORE_ENV}={location}", file=out)
    if store.codec.encrypting:
        print(f"   - Give the runs the same {TOKEN_STORE_KEY_ENV} (without it they cannot read the entry).",
              file=out)
    where = "file" if is_file else "prefix (runs need read and write on it, nobody else any access)"
    print(f"   - Keep the {where} private (it holds the tokens); re-run this command when TikTok asks to "
          "re-authorize.", file=out)
    return 0


def _checked_store(location: str, key: str) -> TokenStoreBase:
    """The configured store, its key and (for an object store) its reachability checked before the code is
    spent. An entry that cannot be decrypted is not an error here: authorizing again replaces it."""
    check_key(key)
    store = open_token_store(location)
    store.probe(key)
    return store


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
