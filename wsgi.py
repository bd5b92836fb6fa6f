"""Production web entry point: `gunicorn wsgi:app` (and `flask --app wsgi ...` for the CLI)."""
import sys

from acebuddy import create_app
from acebuddy.bot.engine import warm_up

app = create_app()
# The web server warms the intent model and knowledge index; CLI commands do not need them.
if "flask" not in sys.argv[0]:
    warm_up(app)
