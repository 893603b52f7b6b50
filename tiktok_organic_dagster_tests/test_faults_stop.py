"""Faults the sync must stop on cleanly: the run fails with a message that says what to do, no table changes
(Delta version and content compared before/after), and the first run after the fault clears succeeds.
"""

from __future__ import annotations

import io
import resource
import signal
import time

from tiktok_organic_dagster.cli import authorize
from tiktok_organic_dagster.names import SYNC_OP
from tiktok_organic_dagster.sandbox import DEFAULT_SCOPES
from tiktok_organic_dagster_tests.fixtures_faults import (
    FULL,
    SYNC,
    assert_mirrors_source,
    failed_steps,
    failure_text,
    run,
    snapshot,
    start_child,
    wait_for_file,
)
from tiktok_organic_dagster_tests.helpers import patched_env, sandbox_env

SYNC_STEP = SYNC_OP  # one step runs both streams side by side
VIDEO_TABLES = ("videos", "videos_history")


def _synced(sandbox_factory, tmp_path, **config):
    server = sandbox_factory(**{"video_count": 60, **config})
    env = sandbox_env(server, tmp_path)
    assert run(FULL, env, server).success
    server.add_videos(3)  # so a run that wrongly wrote anything would change the tables
    server.bump_counters(fraction=0.5)
    return server, env


def _reauthorize(server, env, scopes=DEFAULT_SCOPES) -> None:
    """What the operator does: the user consents again (to ``scopes``), `tiktok-organic-authorize` stores it."""
    server.config.granted_scopes = tuple(scopes)
    code = server.issue_authorization_code()
    out = io.StringIO()
    with patched_env(env):
        assert authorize.main(["--redirect-uri", "https://example.test/cb", f"--code={code}",
                               "--api-base-url", server.base_url], stdout=out) == 0
    assert "Authorized" in out.getvalue()


def test_revoked_refresh_token_fails_fast_and_says_reauthorize(sandbox_factory, tmp_path):
    server, env = _synced(sandbox_factory, tmp_path)
    before = snapshot(env)
    server.revoke_all_tokens()  # the user disconnected the app
    server.reset_counts()
    started = time.monotonic()
    result = run(SYNC, env, server)
    assert not result.success and time.monotonic() - started < 10
    text = failure_text(result)
    assert "ReauthorizationRequired" in text and "invalid_grant" in text
    assert "re-authorize" in text and "tiktok-organic-authorize" in text
    assert server.request_counts()["oauth_token"] == 1  # one refresh attempt for the whole run: no loop
    assert failed_steps(result) == {SYNC_STEP}
    assert "stream 'user_info' failed" in text and "stream 'videos' failed" in text
    assert snapshot(env) == before
    _reauthorize(server, env)
    assert run(SYNC, env, server).success
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)


def test_expired_refresh_token_fails_fast_and_says_reauthorize(sandbox_factory, tmp_path):
    server, env = _synced(sandbox_factory, tmp_path)
    before = snapshot(env)
    server.expire_refresh_tokens()  # 365 days passed ...
    server.expire_access_tokens()  # ... so the access token is long gone too
    server.reset_counts()
    result = run(SYNC, env, server)
    assert not result.success
    text = failure_text(result)
    assert "invalid_grant" in text and "re-authorize" in text
    assert server.request_counts()["oauth_token"] == 1
    assert snapshot(env) == before
    _reauthorize(server, env)
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)


def test_missing_scope_names_scope_and_stream(sandbox_factory, tmp_path):
    """The user re-authorized but unticked a scope: the stream that needs it stops (its tables untouched)
    with a message naming both; the other stream still syncs."""
    server, env = _synced(sandbox_factory, tmp_path)
    _reauthorize(server, env, [s for s in DEFAULT_SCOPES if s != "video.list"])
    before = snapshot(env)
    result = run(SYNC, env, server)
    assert not result.success
    assert failed_steps(result) == {SYNC_STEP}
    text = failure_text(result)
    assert "MissingScopeError" in text and "stream 'videos'" in text and "video.list" in text
    assert "stream 'user_info'" not in text
    assert "user.info" not in text.split("(it asks for")[0]  # names the one missing scope, not all of them
    after = snapshot(env)
    assert {t: after[t] for t in VIDEO_TABLES} == {t: before[t] for t in VIDEO_TABLES}
    assert after["user_info"][0] == before["user_info"][0] + 1  # the stream with its scopes went on

    # consent changes while the access token is live, so the stored grant (no video.list) is stale
    server.config.granted_scopes = ("user.info.basic", "user.info.profile", "video.list")
    result = run(SYNC, env, server)
    assert failed_steps(result) == {SYNC_STEP}
    text = failure_text(result)
    assert "stream 'videos'" not in text
    assert "stream 'user_info'" in text and "missing TikTok scope user.info.stats (needed for fields " \
        "follower_count" in text

    _reauthorize(server, env)
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)


def test_sandbox_down_longer_than_retry_budget(sandbox_factory, tmp_path):
    server, env = _synced(sandbox_factory, tmp_path)
    before = snapshot(env)
    server.stop()  # connection refused for the whole run
    started = time.monotonic()
    result = run(SYNC, env, server, max_retries=3)
    assert not result.success and time.monotonic() - started < 10
    assert failed_steps(result) == {SYNC_STEP}
    text = failure_text(result)
    assert "stream 'user_info' failed" in text and "stream 'videos' failed" in text
    assert "TikTokTransportError" in text and "Connection refused" in text and "gave up after 4 attempts" in text
    assert snapshot(env) == before
    server.start()  # same port, same state
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)


_SLOW_OVERWRITE = """
import os, time
import pyarrow as pa
import tiktok_organic_dagster.lake.writes as dc
_write = dc.write_deltalake
def _slow(target, data, *args, **kwargs):
    # feed the videos overwrite to delta-rs 8 rows at a time and stall after 3 batches (parent kills us)
    uri = str(getattr(target, "table_uri", target)).rstrip("/")
    if kwargs.get("mode") == "overwrite" and uri.endswith("/videos") and isinstance(data, pa.Table):
        source = data
        def batches():
            for i, batch in enumerate(source.to_batches(max_chunksize=8)):
                if i == 3:
                    open(os.environ["FAULT_MARKER"], "w").close()
                    time.sleep(600)
                yield batch
        data = pa.RecordBatchReader.from_batches(source.schema, batches())
    return _write(target, data, *args, **kwargs)
dc.write_deltalake = _slow
"""


def test_sigkill_during_delta_write(sandbox_factory, tmp_path):
    server, env = _synced(sandbox_factory, tmp_path, video_count=120)
    before = snapshot(env)
    marker = tmp_path / "writing"
    proc = start_child(FULL, {**env, "FAULT_MARKER": str(marker)}, server, hook=_SLOW_OVERWRITE)
    try:
        wait_for_file(marker, proc)
        time.sleep(0.2)  # delta-rs is now consuming the stream
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = snapshot(env)  # readable, at the previous version, same content
    assert {t: after[t] for t in VIDEO_TABLES} == {t: before[t] for t in VIDEO_TABLES}
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)


def _disk_full() -> None:
    """Child preexec: any file write past 2 KiB fails (EFBIG, like ENOSPC on a full disk), no signal."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))


def test_disk_full_during_delta_write(sandbox_factory, tmp_path):
    server, env = _synced(sandbox_factory, tmp_path)
    before = snapshot(env)
    proc = start_child(FULL, env, server, preexec=_disk_full)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, output  # the run failed (it did not crash)
    assert "CHILD_RESULT failure" in output
    assert "File too large" in output  # the OS error reaches the run log
    assert snapshot(env) == before  # no partial commit anywhere
    assert run(FULL, env, server).success
    assert_mirrors_source(env, server)
