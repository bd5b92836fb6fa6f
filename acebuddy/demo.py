"""`make run`: the whole product in demo mode on one machine, stopped by Ctrl-C.

Migrates the SQLite database, loads the demo data, starts the embedded Redis, the mail catcher, an RQ
worker and the periodic scheduler as child processes, and serves the web app (webhook, dashboard,
sandboxes, chat simulator) on http://127.0.0.1:$PORT.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from werkzeug.serving import make_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    os.environ.setdefault("ACEBUDDY_DEMO", "1")
    from flask_migrate import upgrade

    from .salesiq.signature import generate_key_pair

    if not os.environ.get("SALESIQ_PUBLIC_KEYS") and not os.environ.get("SALESIQ_API_URL"):
        # The simulator signs what it sends, as "Secure your webhook" makes SalesIQ do, so the demo
        # runs with the signature check on.
        private_pem, public_pem = generate_key_pair()
        os.environ["SALESIQ_SANDBOX_PRIVATE_KEY"] = private_pem
        os.environ["SALESIQ_PUBLIC_KEYS"] = public_pem

    from . import create_app, demo_data
    from .redisconn import ensure_embedded, stop_embedded
    from .sandbox.mailcatcher import MailCatcher

    app = create_app()
    port = app.config["PORT"]
    embedded_redis = not app.config.get("REDIS_URL")
    if embedded_redis:
        app.config["REDIS_URL"] = ensure_embedded(app.instance_path)
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        for line in demo_data.load():
            print(f"  {line}")

    catcher = MailCatcher(os.path.join(app.instance_path, "mailcatcher"))
    catcher.start("127.0.0.1", app.config["MAILCATCHER_PORT"])

    env = dict(os.environ, REDIS_URL=app.config["REDIS_URL"], PORT=str(port), PYTHONUNBUFFERED="1")
    children = [
        subprocess.Popen([sys.executable, os.path.join(ROOT, "worker.py")], env=env, cwd=ROOT),
        subprocess.Popen([sys.executable, os.path.join(ROOT, "worker.py"), "--cron"], env=env, cwd=ROOT),
    ]
    from .bot.engine import warm_up

    warm_up(app)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    base = app.config["PUBLIC_URL"]
    print(
        f"\nAceBuddy is running in demo mode at {base}\n"
        f"  dashboard        {base}/dashboard/\n"
        f"  chat simulator   {base}/simulator/\n"
        f"  mail catcher     {base}/sandbox/mail/ (SMTP on 127.0.0.1:{app.config['MAILCATCHER_PORT']})\n"
        f"  Desk sandbox     {base}/sandbox/desk/tickets\n"
        f"  SalesIQ webhook  {base}/webhook/salesiq\n"
        f"  sign in with     {demo_data.DEMO_USERS[0][0]} / {demo_data.DEMO_USERS[0][3]} (manager)\n"
        f"              or   {demo_data.DEMO_USERS[1][0]} / {demo_data.DEMO_USERS[1][3]} (agent)\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set():
            for child in children:
                if child.poll() is not None:
                    print(f"a background process exited with {child.returncode}; stopping", file=sys.stderr)
                    stop.set()
            stop.wait(1)
    except KeyboardInterrupt:
        pass
    print("\nStopping AceBuddy...", flush=True)
    server.shutdown()
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
    catcher.stop()
    if embedded_redis:
        stop_embedded(app.instance_path)
    time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
