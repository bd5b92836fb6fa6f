"""AceBuddy: the support desk's front line. `create_app()` builds the Flask app."""
from __future__ import annotations

import logging
import os
import secrets

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .config import Config, ConfigError
from . import extensions


def create_app(test_config: dict | None = None, environ=None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    if test_config is None and environ is None:
        from dotenv import load_dotenv

        load_dotenv()

    config = Config(environ)
    app.config.from_mapping(config.as_dict())
    if test_config:
        app.config.update(test_config)
    _fill_defaults(app, config)

    logging.basicConfig(level=app.config["LOG_LEVEL"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Reached through `extensions`, so `acebuddy.mail` stays the e-mail module, not Flask-Mail's object.
    db = extensions.db
    db.init_app(app)
    extensions.migrate.init_app(app, db, directory=os.path.join(os.path.dirname(os.path.dirname(__file__)), "migrations"),
                     render_as_batch=True)  # SQLite needs batch mode to alter tables
    extensions.login_manager.init_app(app)
    extensions.csrf.init_app(app)
    extensions.mail.init_app(app)

    from . import models  # noqa: F401  (tables must be known to Flask-Migrate)
    from . import auth, dashboard, health, manager, sandbox, security
    from .cli import register_commands
    from .desk.webhook import bp as desk_webhook_bp
    from .knowledge import views as knowledge_views
    from .salesiq.webhook import bp as salesiq_bp

    app.register_blueprint(salesiq_bp)
    app.register_blueprint(desk_webhook_bp)
    app.register_blueprint(knowledge_views.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(manager.bp)
    if app.config["DESK_SANDBOX"] or app.config["SALESIQ_SANDBOX"] or app.config.get("TESTING"):
        sandbox.register(app)
    security.init_app(app)
    if app.config["PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    register_commands(app)
    return app


def _fill_defaults(app: Flask, config: Config) -> None:
    """Defaults that depend on the instance folder, and the start-up checks."""
    if not app.config.get("SQLALCHEMY_DATABASE_URI"):
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + os.path.join(app.instance_path, "acebuddy.db")
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    # Hosting platforms hand out postgres:// URLs; SQLAlchemy wants the driver named.
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://" + uri[len(prefix):]
    if not app.config.get("SECRET_KEY") and (app.config["DEMO_MODE"] or app.config.get("TESTING")):
        app.config["SECRET_KEY"] = _instance_secret(app.instance_path)
    if not app.config.get("TESTING"):
        config.SECRET_KEY = app.config.get("SECRET_KEY")
        config.validate()
    elif not app.config.get("SECRET_KEY"):
        raise ConfigError("SECRET_KEY is required")


def _instance_secret(instance_path: str) -> str:
    """Demo mode: a secret generated once and kept in instance/, so sign-ins survive restarts."""
    path = os.path.join(instance_path, "secret_key")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made before, or by a process starting at the same moment
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    with open(path) as fh:
        return fh.read().strip()


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    """SQLite: WAL so the web and worker processes read while one writes; wait rather than fail on locks."""
    module = type(dbapi_connection).__module__
    if module.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
