"""Every error the TikTok client raises; each message is redacted when the error is built."""

from __future__ import annotations

from tiktok_organic_dagster.tiktok.redaction import redact

AUTHORIZE_COMMAND = "tiktok-organic-authorize {target} --redirect-uri <your registered redirect URI>"
REAUTHORIZE_HOWTO = (
    "To re-authorize, run `" + AUTHORIZE_COMMAND + "`; it writes a new token store entry. Then leave {env_var} "
    "unset (the store entry is used) or put the new refresh token in {env_var}."
)
AUTHORIZE_HOWTO = (
    "Authorize the app once: run `" + AUTHORIZE_COMMAND + "` (it writes the token store entry; leave {env_var} "
    "unset), or put a refresh token you already have in {env_var}."
)


def authorize_target(key: str) -> str:
    """The authorize tool's options for a token store entry: ``source.account`` is an account of a
    multi-account source (see ``names.account_token_key``)."""
    source, dot, account = key.partition(".")
    return f"--source {source} --account {account}" if dot else f"--key {key}"


def who(key: str) -> str:
    """What a token store entry belongs to, for messages: ``TikTok account 'a' of source 's'``."""
    source, dot, account = key.partition(".")
    return f"TikTok account '{account}' of source '{source}'" if dot else f"TikTok source '{key}'"


class TikTokError(Exception):
    """Base class of every error raised by the TikTok client; its message is always redacted."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ReauthorizationRequired(TikTokError):
    """No usable refresh token: a human must (re-)authorize the app for this source.

    ``first_time``: there has never been one (no entry, no variable): the message says to authorize, not to
    re-authorize. ``key`` is the source's token store key, named in the message and the command to run.
    """

    def __init__(self, reason: str, *, env_var: str = "TIKTOK_REFRESH_TOKEN", key: str = "tiktok_organic",
                 first_time: bool = False) -> None:
        self.reason = redact(reason)
        self.env_var = env_var
        self.key = key
        self.first_time = first_time
        howto = AUTHORIZE_HOWTO if first_time else REAUTHORIZE_HOWTO
        super().__init__(f"{reason} {howto.format(env_var=env_var, target=authorize_target(key))}")

    def __reduce__(self) -> tuple:
        return (_rebuild_reauth, (self.reason, self.env_var, self.key, self.first_time))


def _rebuild_reauth(reason: str, env_var: str, key: str, first_time: bool) -> ReauthorizationRequired:
    return ReauthorizationRequired(reason, env_var=env_var, key=key, first_time=first_time)


class TikTokApiError(TikTokError):
    """The API answered with an error envelope (``error.code != "ok"``) or an unusable response."""

    def __init__(self, code: str, message: str, log_id: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.api_message = redact(message or "")
        self.log_id = log_id
        self.status = status
        parts = [f"TikTok API error {code}"]
        if status is not None:
            parts.append(f" (HTTP {status})")
        if message:
            parts.append(f": {message}")
        if log_id:
            parts.append(f" [log_id {log_id}]")
        super().__init__("".join(parts))

    def __reduce__(self) -> tuple:
        return (type(self), (self.code, self.api_message, self.log_id, self.status))


class CursorStuckError(TikTokApiError):
    """video/list kept returning the same cursor without new videos: paging further would loop forever."""

    def __init__(self, cursor: int, repeats: int) -> None:
        self.cursor = cursor
        self.repeats = repeats
        super().__init__(
            "cursor_stuck",
            f"video/list returned cursor {cursor} {repeats} times in a row without new videos; "
            "stopping instead of looping (the listing would otherwise be silently truncated)",
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.cursor, self.repeats))


class MissingScopeError(TikTokApiError):
    """The access token lacks a scope the requested fields need (``scope_not_authorized``/``..._missed``).

    ``scope`` names the missing scope (the first, if several); ``scopes`` lists all candidates. Pass
    ``message`` to replace the generated text (e.g. to add which stream failed).
    """

    def __init__(
        self,
        scope: str,
        message: str | None = None,
        *,
        scopes: tuple[str, ...] = (),
        fields: tuple[str, ...] = (),
        code: str = "scope_not_authorized",
        api_message: str = "",
        log_id: str | None = None,
        status: int | None = None,
    ) -> None:
        self.scope = scope
        self.scopes = tuple(scopes) or (scope,)
        self.fields = tuple(fields)
        self.code = code
        self.api_message = redact(api_message or "")
        self.log_id = log_id
        self.status = status
        if message is None:
            message = f"missing TikTok scope {', '.join(self.scopes)}"
            if fields:
                message += f" (needed for fields {', '.join(fields)})"
            message += (
                f"; TikTok said {code}" + (f": {api_message}" if api_message else "")
                + (f" [log_id {log_id}]" if log_id else "")
                + ". Approve the scope for the app, then re-authorize with `tiktok-organic-authorize` "
                "(it asks for user.info.basic,user.info.profile,user.info.stats,video.list)."
            )
        TikTokError.__init__(self, message)

    def __reduce__(self) -> tuple:
        kwargs = {"scopes": self.scopes, "fields": self.fields, "code": self.code,
                  "api_message": self.api_message, "log_id": self.log_id, "status": self.status}
        return (_rebuild_missing_scope, (self.scope, self.message, kwargs))


def _rebuild_missing_scope(scope: str, message: str, kwargs: dict) -> MissingScopeError:
    return MissingScopeError(scope, message, **kwargs)


class RateLimitedError(TikTokApiError):
    """Still rate limited after all retries, or the server asked to wait longer than we are willing to."""

    def __init__(self, message: str, *, retry_after: float | None = None, log_id: str | None = None,
                 status: int | None = 429) -> None:
        self.retry_after = retry_after
        super().__init__("rate_limit_exceeded", message, log_id, status)

    def __reduce__(self) -> tuple:
        return (_rebuild_rate_limited, (self.api_message, self.retry_after, self.log_id, self.status))


def _rebuild_rate_limited(message: str, retry_after: float | None, log_id: str | None,
                          status: int | None) -> RateLimitedError:
    return RateLimitedError(message, retry_after=retry_after, log_id=log_id, status=status)


class TikTokTransportError(TikTokError):
    """Network failure, timeout or undecodable body that persisted through all retries."""


class TikTokConfigError(TikTokError):
    """The client is missing a setting it needs (credentials); the message names it."""


class TokenStoreError(TikTokError):
    """The token store file is unreadable or corrupt (its content is never included in the message)."""

