"""`make dev`: the Dagster UI and daemon (`dagster dev -w workspace.yaml`), on the sandbox or on your account.

* **Sandbox or account** (printed at start): the bundled sandbox TikTok API is used when neither
  ``TIKTOK_CLIENT_ID`` nor ``TIKTOK_ORGANIC_CONFIG`` is set, in the environment or in ``./.env`` (an empty
  value counts as unset); either one set means your account(s). ``./.env`` only fills in variables the
  environment does not set (as for ``tiktok-organic-authorize``); `dagster dev` itself would read it only
  from its own working directory, which is no longer the folder `make dev` runs in. In sandbox mode every
  inherited ``TIKTOK_*`` variable is dropped (see ``demo.sandbox_env``) and the sandbox's credentials reach
  `dagster dev` as variables of the child only.
* **Instance**: ``DAGSTER_HOME`` if set, else ``./.dagster_home``. The project's ``dagster.yaml`` (run and
  pool limits) is copied into ``./.dagster_home`` (also when DAGSTER_HOME names it); any other folder gets
  it only if it has no ``dagster.yaml`` yet. `dagster dev` runs *in* the instance folder: it warns that "the
  dagster.yaml file will not be used" whenever its working directory holds a dagster.yaml and is not
  DAGSTER_HOME, which is what running it from the project folder did. Paths the code resolves against the
  working directory (the Delta root, the settings file, a token store path) are made absolute first, so
  they still mean the folder `make dev` was run in.
* **Shutdown**: `dagster dev` and everything it starts (webserver, daemon, code servers, run workers) run in
  a process group of their own. Ctrl-C, SIGTERM or SIGHUP are forwarded to that group as the SIGINT a
  terminal's Ctrl-C would send; after ``SHUTDOWN_GRACE_SECONDS`` (or at a second signal) the group is
  killed. Whatever is left in the group once `dagster dev` has exited is killed too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from tiktok_organic_dagster.cli.demo import PROJECT_ROOT, sandbox_env
from tiktok_organic_dagster.names import (
    CLIENT_ID_ENV,
    CONFIG_ENV,
    DEFAULT_DELTA_ROOT,
    DELTA_ROOT_ENV,
    TOKEN_STORE_ENV,
)
from tiktok_organic_dagster.sandbox import SandboxConfig, SandboxServer

SHUTDOWN_GRACE_SECONDS = 30.0  # dagster dev's own wait for each of its children is 60 s
LEFTOVER_GRACE_SECONDS = 5.0  # for the group's other processes once dagster dev itself has exited
SAME_SIGNAL_SECONDS = 5.0  # a signal this soon after the first is the same request (2 s was seen too short)
_PATH_VARS = (CONFIG_ENV, DELTA_ROOT_ENV, TOKEN_STORE_ENV)


def uses_sandbox(env: Mapping[str, str]) -> bool:
    """The rule: the sandbox unless TIKTOK_CLIENT_ID or TIKTOK_ORGANIC_CONFIG is set (an empty value is unset)."""
    return not (env.get(CLIENT_ID_ENV) or env.get(CONFIG_ENV))


def mode_line(env: Mapping[str, str], sandbox_url: str | None = None) -> str:
    """What `make dev` runs on and why, in the rule's own words."""
    if sandbox_url is not None:
        return (f"make dev: neither {CLIENT_ID_ENV} nor {CONFIG_ENV} is set (environment or ./.env), so the UI runs on "
                f"the sandbox TikTok API at {sandbox_url} (set either one to use your account)")
    which = " and ".join(v for v in (CLIENT_ID_ENV, CONFIG_ENV) if env.get(v))
    verb = "are" if " and " in which else "is"
    return (f"make dev: {which} {verb} set, so the UI runs on your TikTok account(s) (unset both {CLIENT_ID_ENV} "
            f"and {CONFIG_ENV} to use the sandbox)")


def dagster_home(env: Mapping[str, str], cwd: Path) -> Path:
    """The instance folder, holding the project's dagster.yaml unless it already has its own."""
    default = (cwd / ".dagster_home").resolve()
    own = env.get("DAGSTER_HOME")
    home = (cwd / Path(own).expanduser()).resolve() if own else default
    home.mkdir(parents=True, exist_ok=True)
    if home == default or not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def absolute_paths(env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Relative local paths made absolute against ``cwd`` (URIs such as s3://... stay as they are), and the
    default Delta root spelled out, since the child runs in another folder."""
    out = dict(env)
    out.setdefault(DELTA_ROOT_ENV, DEFAULT_DELTA_ROOT)
    for var in _PATH_VARS:
        value = out.get(var)
        if value and "://" not in value and not Path(value).expanduser().is_absolute():
            out[var] = str(cwd / value)
    return out


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal every process of the group; False once none is left."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def run_group(cmd: list[str], env: Mapping[str, str], cwd: Path, grace: float = SHUTDOWN_GRACE_SECONDS) -> int:
    """Run ``cmd`` as the leader of a new session; forward Ctrl-C/SIGTERM/SIGHUP; leave no process behind."""
    proc = subprocess.Popen(cmd, env=dict(env), cwd=cwd, start_new_session=True)
    signals: list[int] = []
    killed = False

    first_at: list[float] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        # One kill of the process group reaches this process twice (directly, and forwarded by make, which
        # can take seconds on a loaded machine): only a later signal is a second request, which kills at once.
        if first_at and time.monotonic() - first_at[0] < SAME_SIGNAL_SECONDS:
            return
        first_at.append(time.monotonic())
        signals.append(signum)
        first = len(signals) == 1
        print(f"make dev: {signal.Signals(signum).name} received, " + (
            f"stopping dagster dev (killed after {grace:.0f}s)" if first else "killing dagster dev"),
            file=sys.stderr, flush=True)
        _signal_group(proc.pid, signal.SIGINT if first else signal.SIGKILL)

    caught = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, forward) for s in caught}
    deadline: float | None = None
    try:
        while proc.poll() is None:
            if signals and deadline is None:
                deadline = time.monotonic() + grace
            if deadline is not None and time.monotonic() > deadline:
                print(f"make dev: dagster dev did not stop within {grace:.0f}s, killing it", file=sys.stderr)
                killed = _signal_group(proc.pid, signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.1)
        leftover_deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
        while _signal_group(proc.pid, 0) and time.monotonic() < leftover_deadline:
            time.sleep(0.1)
        if _signal_group(proc.pid, signal.SIGKILL):
            print("make dev: killed what dagster dev left running", file=sys.stderr)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if signals:  # stopped on request: clean unless it had to be killed
        return 1 if killed or len(signals) > 1 else 0
    return proc.returncode


def env_file(cwd: Path) -> dict[str, str]:
    """The variables of ``cwd/.env`` (none if there is no such file)."""
    path = cwd / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values  # a dependency of dagster

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def main() -> None:
    cwd = Path.cwd()
    from_file = {k: v for k, v in env_file(cwd).items() if k not in os.environ}
    os.environ.update(from_file)  # before the rule and the child's environment are worked out
    if from_file:
        print(f"make dev: read {', '.join(sorted(from_file))} from {cwd / '.env'}")
    home = dagster_home(os.environ, cwd)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *sys.argv[1:]]
    print(f"make dev: Dagster instance in {home} ({home / 'dagster.yaml'})")
    if not uses_sandbox(os.environ):
        print(mode_line(os.environ), flush=True)
        env = absolute_paths({**os.environ, "DAGSTER_HOME": str(home)}, cwd)
        raise SystemExit(run_group(cmd, env, home))
    with SandboxServer(SandboxConfig(video_count=300)) as server:
        print(mode_line(os.environ, server.base_url), flush=True)
        raise SystemExit(run_group(cmd, sandbox_env(server, home), home))


if __name__ == "__main__":
    main()
