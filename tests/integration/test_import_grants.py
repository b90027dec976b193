"""The GRANTs docs/worker.md lists for each mode are enough, and the ledger's two ways."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from tests.fixtures.services import S3Server
from tests.integration.test_import_load import HEADER, Env, csv_rows

pytestmark = pytest.mark.integration

GRANTS = {
    "Append": ["GRANT INSERT ON {table} TO {role}"],
    "Merge": ["GRANT INSERT, UPDATE ON {table} TO {role}",
              "GRANT SELECT (id, email, score, note) ON {table} TO {role}"],
    "Overwrite": ["GRANT INSERT, DELETE ON {table} TO {role}"],
}


@pytest.fixture
def env(pg_db: str, s3: S3Server, s3_bucket: str, tmp_path: Path,
        request: pytest.FixtureRequest) -> Env:
    return Env(pg_db, s3, s3_bucket, tmp_path, request.node.name)


@pytest.mark.parametrize("ledger_by", ["worker", "dba"])
@pytest.mark.parametrize("mode", ["Append", "Merge", "Overwrite"])
def test_the_least_grants_of_each_mode(env: Env, mode: str, ledger_by: str) -> None:
    role = f"ferry_import_{uuid.uuid4().hex[:8]}"
    schema = f"s_{mode.lower()}_{ledger_by}"
    table = f"{schema}.contacts"
    env.sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    env.sql(f"CREATE SCHEMA {schema}")
    env.sql(f"CREATE TABLE {table} (id integer PRIMARY KEY, email text NOT NULL, "
            "score integer, note text)")
    env.sql(f"INSERT INTO {table} VALUES ({1 if mode == 'Merge' else 0}, 'old', 0, 'old')")
    env.sql(f"CREATE ROLE {role} LOGIN PASSWORD 'import-pw-1234'")
    dbname = psycopg.conninfo.conninfo_to_dict(env.dsn)["dbname"]
    env.sql(f"GRANT CONNECT ON DATABASE {dbname} TO {role}")
    env.sql(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
    for grant in GRANTS[mode]:
        env.sql(grant.format(table=table, role=role))
    if ledger_by == "worker":
        env.sql(f"GRANT CREATE ON SCHEMA {schema} TO {role}")
    else:
        env.sql(f"CREATE TABLE {schema}.ferry_import_ledger (namespace text NOT NULL, "
                "job text NOT NULL, job_uid text NOT NULL, run_id text NOT NULL, batch integer "
                "NOT NULL, file_key text NOT NULL, etag text NOT NULL, table_name text NOT NULL, "
                "rows bigint NOT NULL, rejected bigint NOT NULL, bytes bigint NOT NULL, "
                "loaded_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (namespace, job, job_uid, run_id, file_key))")
        env.sql(f"GRANT SELECT, INSERT ON {schema}.ferry_import_ledger TO {role}")
    env.put("a.csv", HEADER + csv_rows(1, 50))
    dsn = psycopg.conninfo.make_conninfo(env.dsn, user=role, password="import-pw-1234")
    plan = env.plan(table, mode=mode, **({"keyColumns": ["id"]} if mode == "Merge" else {}))
    try:
        from tests.integration.test_import_load import run_import  # noqa: PLC0415

        run = run_import(plan, dsn, env.s3, env.tmp_path)
        assert run.code == 0, run.message
        assert "import-pw-1234" not in run.raw_message
        count = env.sql(f"SELECT count(*) FROM {table}")[0][0]
        assert count == (51 if mode == "Append" else 50)
        assert env.sql(f"SELECT count(*) FROM {schema}.ferry_import_ledger")[0][0] == 1
    finally:
        env.sql(f"DROP SCHEMA {schema} CASCADE")
        env.sql(f"REVOKE ALL ON DATABASE {dbname} FROM {role}")
        env.sql(f"DROP ROLE {role}")
