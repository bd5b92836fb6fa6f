"""Production web entry point: `gunicorn wsgi:app` (and `flask --app wsgi ...` for the CLI)."""
from acebuddy import create_app

app = create_app()
