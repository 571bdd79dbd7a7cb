"""The private PostgreSQL cluster (autosmime.devstack.postgres) behind the ``postgres_url`` fixture."""

from __future__ import annotations

import sqlalchemy as sa


def test_postgres_url_is_a_working_private_database(postgres_url: str, postgres_cluster) -> None:
    assert postgres_url.startswith("postgresql+psycopg://") and "127.0.0.1" in postgres_url
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS fixture_probe (x int)"))
            conn.execute(sa.text("INSERT INTO fixture_probe VALUES (7)"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(x) FROM fixture_probe")).scalar() >= 7
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "autosmime_test"
    finally:
        engine.dispose()
    other = postgres_cluster.url("fixture_other")
    assert other.endswith("/fixture_other")
