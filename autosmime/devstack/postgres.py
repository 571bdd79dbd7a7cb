"""A private, throw-away PostgreSQL cluster on a loopback port, for tests and the devstack.

    >>> from autosmime.devstack.postgres import PostgresCluster, postgres_available
    >>> with PostgresCluster.start() as pg:                      # doctest: +SKIP
    ...     url = pg.url("autosmime")                            # creates the database
    >>> url                                                      # doctest: +SKIP
    'postgresql+psycopg://autosmime@127.0.0.1:54012/autosmime'

The binaries come from ``/usr/lib/postgresql/<version>/bin`` (the newest one
installed; Debian's ``postgresql`` package, which scripts/install.sh adds).
The cluster lives in a temporary directory (data, socket, log), listens only
on 127.0.0.1 on a free port, trusts local connections (it is reachable by
nothing but this machine's loopback, for the lifetime of a test session) and
is stopped with ``pg_ctl stop -m immediate`` at the end. PostgreSQL refuses to
run as root, so as root every command runs as the ``postgres`` system user
through ``runuser`` and the directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from autosmime.errors import AutosmimeError

SUPERUSER = "autosmime"


class PostgresError(AutosmimeError):
    """The private PostgreSQL cluster could not be started or used."""


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(found[-1]).parent if found else None


def postgres_available() -> bool:
    """True when PostgreSQL server binaries are installed (and runuser exists if we are root)."""
    if _bindir() is None:
        return False
    return os.geteuid() != 0 or (shutil.which("runuser") is not None and _system_user() is not None)


def _system_user() -> str | None:
    import pwd

    for name in ("postgres",):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresCluster:
    """A running private cluster. Use :meth:`start`, then :meth:`stop` (or a ``with`` block)."""

    def __init__(self, base: Path, port: int, bindir: Path, run_as: str | None) -> None:
        self.base = base
        self.port = port
        self.host = "127.0.0.1"
        self._bindir = bindir
        self._run_as = run_as
        self._stopped = False

    @classmethod
    def start(cls, base_dir: Path | None = None, timeout: float = 60.0) -> PostgresCluster:
        bindir = _bindir()
        if bindir is None:
            raise PostgresError("PostgreSQL is not installed (apt-get install postgresql)")
        run_as = _system_user() if os.geteuid() == 0 else None
        if os.geteuid() == 0 and run_as is None:
            raise PostgresError("running as root and no 'postgres' system user to run PostgreSQL as")
        base = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="autosmime-pg-"))
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        if run_as:
            shutil.chown(base, user=run_as, group=None)
        cluster = cls(base, _free_port(), bindir, run_as)
        try:
            cluster._run("initdb", "-D", str(base / "data"), "-U", SUPERUSER, "--auth=trust",
                         "-E", "UTF8", "--locale=C", "--no-sync")
            conf = (f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                    f"unix_socket_directories = '{base}'\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\nmax_connections = 200\n")
            with open(base / "data" / "postgresql.conf", "a") as f:
                f.write(conf)
            cluster._run("pg_ctl", "-D", str(base / "data"), "-l", str(base / "server.log"),
                         "-w", "-t", str(int(timeout)), "start")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, tool: str, *args: str) -> str:
        cmd = [str(self._bindir / tool), *args]
        if self._run_as:
            cmd = ["runuser", "-u", self._run_as, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.base, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise PostgresError(f"{tool} failed: {' / '.join(tail)}")
        return proc.stdout

    def create_database(self, name: str) -> None:
        """Create database ``name`` (no error if it exists)."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def url(self, database: str = "autosmime", *, create: bool = True) -> str:
        """A SQLAlchemy URL (psycopg 3 driver) for ``database``, created first by default."""
        if create:
            self.create_database(database)
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(PostgresError, OSError):
            if (self.base / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.base / "data"), "-m", "immediate", "-w", "stop")
        # give a killed postmaster's children a moment before the directory goes
        time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
