"""Object-store URLs for the token store: which schemes count, and the client a URL gets from the environment.

Credentials come from the same ``AWS_*`` / ``GOOGLE_*`` / ``AZURE_*`` variables as the Delta root. The lake
(``lake/store.py``) picks them out of ``os.environ`` and hands them to delta-rs as ``storage_options``; this
module does not import the lake (``tiktok/`` may import only ``names``, and the lake knows nothing of tokens)
and does not copy its list either: ``obstore`` is the same Rust ``object_store`` that delta-rs is built on,
and its builders read those variables themselves (``from_env``), skipping names they do not know. Copying the
values into ``config`` by hand would be worse: ``aws_allow_http`` there panics the binding, and delta-rs-only
names such as ``AWS_S3_ALLOW_UNSAFE_RENAME`` raise ``UnknownConfigurationKeyError``.

What is done by hand here: the scheme table (the same URLs the lake accepts) and the HTTP client options.
Passing ``client_options`` replaces the ones obstore would read from the environment, so ``*_ALLOW_HTTP`` is
carried over explicitly (an ``http://`` emulator endpoint needs it) next to short timeouts: a token-store
call that hangs should fail the run in seconds, not after object_store's default three minutes of retries.
``AWS_PROFILE`` is honoured by delta-rs but not by object_store: use keys, a role or web identity instead.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import TYPE_CHECKING

from tiktok_organic_dagster.tiktok.errors import TokenStoreError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

# Same schemes as the Delta root (lake/store.py _REMOTE_SCHEMES).
CLOUD_OF_SCHEME = {"s3": "aws", "s3a": "aws", "gs": "gcs", "gcs": "gcs",
                   "az": "azure", "abfs": "azure", "abfss": "azure", "azure": "azure", "adl": "azure"}
_ENV_PREFIX = {"aws": ("AWS_",), "gcs": ("GOOGLE_",), "azure": ("AZURE_",)}
_ALLOW_HTTP = {"aws": ("AWS_ALLOW_HTTP",), "gcs": ("GOOGLE_ALLOW_HTTP",),
               "azure": ("AZURE_ALLOW_HTTP", "AZURE_STORAGE_ALLOW_HTTP")}
_TRUE = {"1", "true", "yes", "on"}
REQUEST_TIMEOUT = "30s"
CONNECT_TIMEOUT = "5s"
RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}


def url_scheme(location: str) -> str:
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+)://", location)
    return match.group(1).lower() if match else ""


def is_object_url(location: str) -> bool:
    """True for ``s3://``, ``gs://``, ``az://``/``abfss://``...; False for local paths and ``file://``.

    Any other ``scheme://`` raises: it is a typo or an unsupported store, never a local folder name."""
    scheme = url_scheme(location)
    if not scheme or scheme == "file":
        return False
    if scheme not in CLOUD_OF_SCHEME:
        raise TokenStoreError(
            f"token store {location!r} has unsupported scheme '{scheme}': use a local path, file://, s3://, "
            "gs://, az:// or abfss://")
    return True


def credential_env_names(url: str) -> list[str]:
    """Names (never values) of the variables set for the URL's cloud, for error messages."""
    prefixes = _ENV_PREFIX[CLOUD_OF_SCHEME[url_scheme(url)]]
    return sorted(k for k in os.environ if k.startswith(prefixes))


def client_options(url: str) -> ClientConfig:
    cloud = CLOUD_OF_SCHEME[url_scheme(url)]
    options: ClientConfig = {"timeout": REQUEST_TIMEOUT, "connect_timeout": CONNECT_TIMEOUT}
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in _ALLOW_HTTP[cloud]):
        options["allow_http"] = True
    return options


def open_object_store(url: str) -> ObjectStore:
    """An obstore store rooted at the URL's prefix, credentials and endpoint read from the environment."""
    from obstore.exceptions import BaseError
    from obstore.store import from_url

    try:
        return from_url(url, client_options=client_options(url), retry_config=RETRY)
    except (BaseError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TokenStoreError(f"cannot open token store {url}: {first_line} (variables set: "
                              f"{', '.join(credential_env_names(url)) or 'none'})") from None
