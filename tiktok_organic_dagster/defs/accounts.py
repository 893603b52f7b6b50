"""A multi-account source's accounts as Dagster dynamic partitions: who registers them and when.

An account becomes a partition only once its token is somewhere a run can find it (its variable or the
token store): a partition without a token would only produce failed runs. Accounts listed in the settings
are registered by a sensor; ``tiktok-organic-accounts add`` registers the others itself, without a redeploy.
"""

from __future__ import annotations

import os

import dagster as dg

from tiktok_organic_dagster.defs.resources import TikTokClientResource
from tiktok_organic_dagster.names import (
    account_token_key,
    accounts_partitions_name,
    accounts_sensor_name,
    client_resource_key,
    pool_name,
)
from tiktok_organic_dagster.settings import SourceSettings
from tiktok_organic_dagster.tiktok import TokenStoreError
from tiktok_organic_dagster.tiktok.token_store import open_token_store


class InstanceUnavailable(Exception):
    """The command-line tools need the deployment's instance (``DAGSTER_HOME``)."""


def deployment_instance() -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME``: partitions registered elsewhere would be invisible to the deployment."""
    if not os.environ.get("DAGSTER_HOME"):
        raise InstanceUnavailable("DAGSTER_HOME is not set: point it at the folder with the deployment's "
                                  "dagster.yaml (the instance where the account partitions live)")
    return dg.DagsterInstance.get()


def registered_accounts(source: str, instance: dg.DagsterInstance | None = None) -> list[str]:
    instance = instance or deployment_instance()
    return list(instance.get_dynamic_partitions(accounts_partitions_name(source)))


def register_account(source: str, account: str, instance: dg.DagsterInstance | None = None) -> bool:
    """Add the account's partition; False if it was there already."""
    instance = instance or deployment_instance()
    name = accounts_partitions_name(source)
    if instance.has_dynamic_partition(name, account):
        return False
    instance.add_dynamic_partitions(name, [account])
    return True


def unregister_account(source: str, account: str, instance: dg.DagsterInstance | None = None) -> bool:
    instance = instance or deployment_instance()
    name = accounts_partitions_name(source)
    if not instance.has_dynamic_partition(name, account):
        return False
    instance.delete_dynamic_partition(name, account)
    return True


def pool_advice(source: SourceSettings, instance: dg.DagsterInstance | None = None) -> str | None:
    """What to run when the app's pool limit is not ``max_parallel_accounts`` (None when it is)."""
    instance = instance or deployment_instance()
    pool = pool_name(source.name)
    info = instance.event_log_storage.get_concurrency_info(pool)
    limit = None if info.using_default_limit else info.slot_count
    if limit == source.max_parallel_accounts:
        return None
    now = "is not set (the instance's default applies)" if limit is None else f"is {limit}"
    return (f"the pool {pool}'s limit {now}; its runs pace themselves for {source.max_parallel_accounts} at once: "
            f"run `dagster instance concurrency set {pool} {source.max_parallel_accounts}`")


def token_missing(token_store: str | None, source: str, account: str, env_var: str | None) -> str | None:
    """Why the account has no token a run could start from; None when it has one."""
    if env_var and os.environ.get(env_var):
        return None
    key = account_token_key(source, account)
    try:
        if open_token_store(token_store).get(key) is not None:
            return None
    except TokenStoreError as exc:
        return f"the token store cannot be read ({exc})"
    where = f"{env_var} is not set and " if env_var else ""
    return f"{where}the token store has no entry '{key}'"


def build_accounts_sensor(source: SourceSettings) -> dg.SensorDefinition:
    ck = client_resource_key(source.name)
    partitions = dg.DynamicPartitionsDefinition(name=accounts_partitions_name(source.name))

    @dg.sensor(name=accounts_sensor_name(source.name), minimum_interval_seconds=60, required_resource_keys={ck},
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Registers the accounts listed in the settings of `{source.name}` as partitions once "
               "their token is available (its variable or the token store).")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        client: TikTokClientResource = getattr(context.resources, ck)
        known = set(context.instance.get_dynamic_partitions(partitions.name or ""))
        add, waiting = [], []
        for account in source.accounts or ():
            if account.name in known:
                continue
            missing = token_missing(client.token_store_path, source.name, account.name, account.refresh_token_env)
            if missing is None:
                add.append(account.name)
            else:
                waiting.append(f"{account.name}: {missing}")
        if waiting:
            context.log.warning("not registered yet (no token): " + "; ".join(waiting))
        if not add:
            return dg.SensorResult(skip_reason="; ".join(waiting)[:1000] or "every listed account is registered")
        return dg.SensorResult(dynamic_partitions_requests=[partitions.build_add_request(add)])

    return _sensor
