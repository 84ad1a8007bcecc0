"""The stores MLflow servers run on in the tests, as teams run MLflow: a PostgreSQL or MariaDB
server (Debian's packages) as the backend store, and moto's S3 server as the artifact store.
Each is a real server process (moto: a real HTTP S3 API in a thread) on 127.0.0.1, started in a
temporary directory by a context manager and stopped when it exits.

Both database servers refuse to run as root: as root (CI containers) they run as `nobody`, in a
directory of their own under /tmp (pytest's temporary directories admit only their owner)."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from tests.conftest import Process, free_port, require_tool, wait_until

DATABASE, USER, PASSWORD = "mlflow", "mlflow", "turnout-db-password"  # a throwaway server's
BUCKET = "turnout-models"
KEY_ID, SECRET, REGION = "turnout-test", "turnout-test-secret", "us-east-1"  # dummies
SERVICE_USER = "nobody"  # who runs the database servers when the tests run as root


@dataclass
class Database:
    """A database server holding an empty database DATABASE that USER (password PASSWORD) owns."""

    dialect: str  # SQLAlchemy's: "postgresql" or "mysql"
    driver: str  # the Python driver MLflow connects with: "psycopg2" or "pymysql"
    port: int
    process: Process
    host: str = "127.0.0.1"

    @property
    def uri(self) -> str:
        """The backend store URI MLflow takes (`--backend-store-uri`)."""
        return (
            f"{self.dialect}+{self.driver}://{USER}:{PASSWORD}@{self.host}:{self.port}/{DATABASE}"
        )

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """The rows of `query` (parameters as `%s`, in both drivers), as USER over TCP."""
        if self.driver == "psycopg2":
            import psycopg2

            connection: Any = psycopg2.connect(host=self.host, port=self.port, user=USER,
                                               password=PASSWORD, dbname=DATABASE)  # fmt: skip
        else:
            import pymysql

            connection = pymysql.connect(host=self.host, port=self.port, user=USER,
                                         password=PASSWORD, database=DATABASE)  # fmt: skip
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            connection.close()


@dataclass
class S3:
    """The S3 server, a client on it, and the request lines it has answered so far."""

    endpoint: str
    client: Any
    requests: list[str] = field(default_factory=list)

    def keys(self, prefix: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def aws_env(tmp: Path, endpoint: str) -> dict[str, str]:
    """Dummy keys and a region, and no shared AWS config that could send boto3 elsewhere."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_MAX_ATTEMPTS": "1",
    }


class _RequestLog(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def s3_server() -> Iterator[S3]:
    """moto's S3 server with an empty bucket BUCKET; every request line it answers is logged."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    requests: list[str] = []  # moto answers through werkzeug, which logs every request line
    handler, werkzeug = _RequestLog(requests), logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.addHandler(handler)
    werkzeug.setLevel(logging.INFO)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.session.Session(
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
        ).client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield S3(endpoint, client, requests)
    finally:
        server.stop()
        werkzeug.removeHandler(handler)
        werkzeug.setLevel(level)


@contextmanager
def _service_home(prefix: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A fresh directory the database server's user owns, and the Popen arguments that run a
    program as that user (none unless we are root)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        group = pwd.getpwnam(SERVICE_USER).pw_gid
        shutil.chown(home, SERVICE_USER, group)
        as_user = {"user": SERVICE_USER, "group": group, "extra_groups": []}
    try:
        yield home, as_user
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(argv: list[str], log: Path, as_user: dict[str, Any], timeout: float = 120) -> None:
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                              cwd=log.parent, check=False, **as_user)  # fmt: skip
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{log.read_text()[-3000:]}"


def _serve(argv: list[str], log: Path, as_user: dict[str, Any], url: str) -> Process:
    handle = log.open("ab")
    popen = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent,
                             **as_user)  # fmt: skip
    return Process(url, popen, log)


def _postgres_binary(name: str) -> str:
    """initdb and postgres: on PATH, else where Debian's postgresql puts them (off PATH)."""
    return require_tool(name, *sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:])


@contextmanager
def postgres() -> Iterator[Database]:
    """A PostgreSQL server on a free port of 127.0.0.1 (password authentication only), with the
    database DATABASE owned by USER."""
    initdb, server = _postgres_binary("initdb"), _postgres_binary("postgres")
    with _service_home("turnout-postgres-") as (home, as_user):
        password = home / "password"
        password.write_text(PASSWORD)
        if as_user:
            shutil.chown(password, as_user["user"], as_user["group"])
        log = home / "postgres.log"
        _run([initdb, "--pgdata", str(home / "data"), "--username", USER, "--pwfile",
              str(password), "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-sync"],
             log, as_user)  # fmt: skip
        port = free_port()
        proc = _serve([server, "-D", str(home / "data"), "-h", "127.0.0.1", "-p", str(port),
                       "-k", str(home), "-c", "fsync=off", "-c", "full_page_writes=off"],
                      log, as_user, f"postgresql://127.0.0.1:{port}")  # fmt: skip
        try:
            import psycopg2

            def created() -> bool:
                proc.alive()
                connection = psycopg2.connect(host="127.0.0.1", port=port, user=USER,
                                              password=PASSWORD, dbname="postgres")  # fmt: skip
                connection.autocommit = True  # CREATE DATABASE runs outside transactions
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
                finally:
                    connection.close()
                return True

            wait_until(created, timeout=60, interval=0.2, what="PostgreSQL")
            yield Database("postgresql", "psycopg2", port, proc)
        finally:
            proc.stop(signal.SIGINT)  # a fast shutdown: it does not wait for clients to leave


@contextmanager
def mariadb() -> Iterator[Database]:
    """A MariaDB server on a free port of 127.0.0.1, with the database DATABASE and the user
    USER@'%' (password PASSWORD) who may do anything in it; root only on the Unix socket."""
    install = require_tool("mariadb-install-db", "/usr/bin/mariadb-install-db")
    server = require_tool("mariadbd", "/usr/sbin/mariadbd")
    with _service_home("turnout-mariadb-") as (home, as_user):
        log, data, socket = home / "mariadb.log", home / "data", home / "mariadb.sock"
        _run([install, "--no-defaults", f"--datadir={data}", "--skip-test-db",
              "--auth-root-authentication-method=normal", "--skip-name-resolve"],
             log, as_user)  # fmt: skip
        port = free_port()
        proc = _serve([server, "--no-defaults", f"--datadir={data}", f"--port={port}",
                       "--bind-address=127.0.0.1", f"--socket={socket}", "--skip-name-resolve",
                       "--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"],
                      log, as_user, f"mysql://127.0.0.1:{port}")  # fmt: skip
        try:
            import pymysql

            def created() -> bool:
                proc.alive()
                connection = pymysql.connect(unix_socket=str(socket), user="root", autocommit=True)
                with connection, connection.cursor() as cursor:
                    cursor.execute(f"CREATE DATABASE {DATABASE}")
                    cursor.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
                    cursor.execute(f"GRANT ALL PRIVILEGES ON {DATABASE}.* TO '{USER}'@'%'")
                return True

            wait_until(created, timeout=60, interval=0.2, what="MariaDB")
            yield Database("mysql", "pymysql", port, proc)
        finally:
            proc.stop()
