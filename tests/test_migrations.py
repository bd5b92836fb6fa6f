"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""
import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, inspect, text

from acebuddy import create_app
from acebuddy.extensions import db
from tests.conftest import EXTERNAL_DB

MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations")


def _database_url(tmp_path) -> str:
    if not EXTERNAL_DB:
        return f"sqlite:///{tmp_path}/migrated.db"
    # A schema of its own, so the session's tables are left alone.
    engine = create_engine(EXTERNAL_DB.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS migration_check CASCADE"))
        conn.execute(text("CREATE SCHEMA migration_check"))
    engine.dispose()
    joiner = "&" if "?" in EXTERNAL_DB else "?"
    return f"{EXTERNAL_DB}{joiner}options=-csearch_path%3Dmigration_check"


def test_upgrade_matches_the_models_and_downgrade_empties(tmp_path):
    app = create_app({"TESTING": True, "SECRET_KEY": "m"}, environ={"DATABASE_URL": _database_url(tmp_path)})
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        downgrade(directory=MIGRATIONS, revision="base")
        tables = set(inspect(db.engine).get_table_names()) - {"alembic_version"}
        assert tables == set()
        db.engine.dispose()
