"""A real PostgreSQL server for tests, started in a temporary directory (registered in conftest.pytest_plugins).

The server comes from Debian's ``postgresql`` package (binaries under ``/usr/lib/postgresql/<version>/bin``;
``.ci/run`` installs it when missing), runs as a non-root user (``initdb`` refuses root: as root the binaries
run as the package's ``postgres`` system user through ``runuser``), listens only on 127.0.0.1 on a free port
and on a unix socket inside its own directory, and requires a password. The machine's own cluster (the
package's system service) is never used. One server serves the whole test session; every test asks it for
its own database with :meth:`PostgresServer.create_database`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SERVER_USER = "postgres"  # created by Debian's postgresql-common; used only when the tests run as root
SUPERUSER = "tiktok_test"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/<version>/bin "
    "or on PATH. Install Debian's postgresql package (`apt-get install -y postgresql`; .ci/run does this) or "
    "set PG_BIN to the directory holding them."
)


def find_pg_bin() -> Path | None:
    """``$PG_BIN``, else the newest ``/usr/lib/postgresql/<version>/bin``, else wherever PATH has initdb."""
    candidates = [os.environ["PG_BIN"]] if os.environ.get("PG_BIN") else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
                         reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for directory in candidates:
        if all(os.access(Path(directory) / b, os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    bin_dir: Path
    base_dir: Path
    port: int
    password: str
    user: str = SUPERUSER
    host: str = "127.0.0.1"
    run_as: list[str] = field(default_factory=list)  # ["runuser", "-u", "postgres", "--"] as root

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def params(self, dbname: str = "postgres") -> dict[str, str | int]:
        """Keyword arguments for ``psycopg2.connect``."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "dbname": dbname}

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres"):
        import psycopg2  # installed with dagster-postgres

        return psycopg2.connect(**self.params(dbname))

    def create_database(self, name: str) -> str:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args],
                              cwd=self.base_dir, capture_output=True, text=True, check=check, timeout=120)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


def _run(cmd: list[str], what: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")


def start_postgres_server() -> PostgresServer:
    """initdb + pg_ctl start in a fresh temporary directory; stop it with :func:`stop_postgres_server`."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    run_as: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            pytest.fail(f"running as root, but the {SERVER_USER!r} system user (created by Debian's "
                        f"postgresql package) does not exist. {INSTALL_HINT}", pytrace=False)
        run_as = ["runuser", "-u", SERVER_USER, "--"]
    # directly under the system temp dir (not pytest's 0700 root-owned tmp_path) so the server user reaches it
    base = Path(tempfile.mkdtemp(prefix="tiktok-pg-"))
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    os.chmod(base, 0o700)
    server = PostgresServer(bin_dir=bin_dir, base_dir=base, port=0, password=secrets.token_urlsafe(18),
                            run_as=run_as)
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(server.password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        os.chmod(pwfile, 0o600)
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", server.user,
              f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], "initdb", base)
        pwfile.unlink()
        last_error = ""
        for _ in range(5):  # a free port may be taken by someone else before the server binds it
            server.port = _free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1", f"-p {server.port}", f"-c unix_socket_directories={base}",
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",  # throwaway data
                "-c max_connections=200",
            ])
            proc = server.pg_ctl("start", "-w", "-t", "60", "-l", str(server.log_file), "-o", options, check=False)
            if proc.returncode == 0:
                return server
            last_error = f"{proc.stdout}\n{proc.stderr}\n{server.log_tail()}"
            server.pg_ctl("stop", "-m", "immediate", check=False)
        raise RuntimeError(f"pg_ctl start failed 5 times; last output:\n{last_error}")
    except BaseException:
        stop_postgres_server(server)
        raise


def stop_postgres_server(server: PostgresServer) -> None:
    if (server.data_dir / "postmaster.pid").exists():
        server.pg_ctl("stop", "-m", "fast", "-w", "-t", "60", check=False)
    shutil.rmtree(server.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session; stopped (``pg_ctl stop -m fast``) and removed at the end."""
    server = start_postgres_server()
    try:
        yield server
    finally:
        stop_postgres_server(server)


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server; its name."""
    return postgres_server.create_database(f"test_{os.getpid()}_{next(_db_counter)}_{int(time.time())}")
