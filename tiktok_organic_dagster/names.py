"""Every name the project gives to things outside Python: jobs, ops, resources, pools, tags, environment
variables, commit metadata. Tests and benchmarks import these instead of re-typing the strings, so a rename
happens here once and breaks loudly everywhere else.

A leaf module: it imports nothing from the package, so every layer may read it.
"""

from __future__ import annotations

DEFAULT_SOURCE_NAME = "tiktok_organic"
DEFAULT_API_BASE_URL = "https://open.tiktokapis.com"

# ---------------------------------------------------------------------------------- environment variables
CONFIG_ENV = "TIKTOK_ORGANIC_CONFIG"
API_BASE_URL_ENV = "TIKTOK_API_BASE_URL"
DELTA_ROOT_ENV = "TIKTOK_DELTA_ROOT"
TOKEN_STORE_ENV = "TIKTOK_TOKEN_STORE"
TOKEN_STORE_KEY_ENV = "TIKTOK_TOKEN_STORE_KEY"  # Fernet key(s): token store entries encrypted at rest
CLIENT_ID_ENV = "TIKTOK_CLIENT_ID"
CLIENT_SECRET_ENV = "TIKTOK_CLIENT_SECRET"
REFRESH_TOKEN_ENV = "TIKTOK_REFRESH_TOKEN"
DEFAULT_DELTA_ROOT = "data/lakehouse"  # relative to the working directory

# ---------------------------------------------------------------------------------- Dagster names
CODE_LOCATION = "tiktok_organic_dagster"
SOURCE_TAG = "tiktok_organic/source"  # dagster.yaml limits runs per value of this tag to one
SYNC_KIND_TAG = "tiktok_organic/sync"
ACCOUNT_TAG = "tiktok_organic/account"  # runs of one account never overlap (a tag limit per value)
ACCOUNT_COLUMN = "account"  # the partition column of a multi-account source's tables
TRIGGER_TAG = "tiktok_organic/trigger"
CATCHUP_TRIGGER = "catchup_sensor"
OWNERS = ("team:data-engineering",)


def sync_job_name(source: str) -> str:
    return f"{source}_sync"


def full_sync_job_name(source: str) -> str:
    return f"{source}_full_sync"


def schedule_name(job: str) -> str:
    return f"{job}_schedule"


def catchup_sensor_name(source: str) -> str:
    return f"{source}_full_sync_catchup_sensor"


def accounts_sensor_name(source: str) -> str:
    return f"{source}_accounts_sensor"


def sync_op_name(source: str) -> str:
    return f"{source}__sync"


def schema_check_op_name(source: str) -> str:
    """The step of a source's column-schema checks (``column_schema_change`` on each table)."""
    return f"{source}__column_schema_change"


def client_resource_key(source: str) -> str:
    return f"{source}_tiktok"


def catalog_resource_key(source: str) -> str:
    return f"{source}_delta"


def accounts_partitions_name(source: str) -> str:
    """The dynamic partitions (one key per account) of a source that declares ``accounts``."""
    return f"{source}_accounts"


def account_token_key(source: str, account: str) -> str:
    """Token store entry of one account of a multi-account source (account names have no '.')."""
    return f"{source}.{account}"


def pool_name(source: str) -> str:
    """One API pool per account: its steps share the account's rate budget, so they run one at a time."""
    return f"tiktok_api_{source}"


# ---------------------------------------------------------------------------------- Delta commit metadata
COMMIT_PREFIX = "tiktok_organic."  # prefix of our keys in each Delta commit's info
FULL_SYNC_APP_ID = "tiktok_organic.full_sync"  # Delta app transaction; its version = epoch ms of the full sync


def full_sync_app_id(account: str | None = None) -> str:
    """The full sync's app transaction id: one per account in a multi-account source's shared tables."""
    return FULL_SYNC_APP_ID if account is None else f"{FULL_SYNC_APP_ID}.{account}"


# ---------------------------------------------------------------------------------- the default source's names
# What the single-account setup (environment variables, no settings file) is called; tests and benchmarks use
# these instead of spelling the strings.
SYNC_JOB = sync_job_name(DEFAULT_SOURCE_NAME)
FULL_SYNC_JOB = full_sync_job_name(DEFAULT_SOURCE_NAME)
SYNC_SCHEDULE = schedule_name(SYNC_JOB)
FULL_SYNC_SCHEDULE = schedule_name(FULL_SYNC_JOB)
CATCHUP_SENSOR = catchup_sensor_name(DEFAULT_SOURCE_NAME)
SYNC_OP = sync_op_name(DEFAULT_SOURCE_NAME)
CLIENT_RESOURCE = client_resource_key(DEFAULT_SOURCE_NAME)
CATALOG_RESOURCE = catalog_resource_key(DEFAULT_SOURCE_NAME)
