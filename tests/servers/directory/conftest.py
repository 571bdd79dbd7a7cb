"""Fixtures for the directory tests: the PKI, a database per test (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import secrets

import pytest
from starlette.testclient import TestClient

from autosmime.servers.directory.app import make_app
from autosmime.servers.directory.service import Directory
from tests.servers.directory import support


@pytest.fixture(scope="session")
def pki() -> support.Pki:
    return support.Pki()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/directory.db"
    try:
        cluster = request.getfixturevalue("postgres_cluster")
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_cluster fixture in this tree")
    return cluster.url(f"dir_{secrets.token_hex(6)}")


@pytest.fixture
def directory(pki, db_url) -> Directory:
    d = Directory(support.config(pki, db_url))
    yield d
    d.engine.dispose()


@pytest.fixture
def api(directory) -> TestClient:
    with TestClient(make_app(directory)) as client:
        yield client
