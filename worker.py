"""Production RQ worker for all AceBuddy queues: `python worker.py`.

`python worker.py` runs a worker (with RQ's scheduler, which releases delayed retries);
`python worker.py --cron` runs the periodic jobs instead (outbox sweep, Desk status poll);
`python worker.py --burst` drains the queues and exits. Run as many workers as you like, one cron.
"""
from __future__ import annotations

import argparse
import logging

from rq import Worker
from rq.cron import CronScheduler

from acebuddy import create_app, jobs
from acebuddy.redisconn import get_redis

DESK_POLL_INTERVAL = 300
SLA_CHECK_INTERVAL = 60  # SLA warnings and breaches are noticed within a minute
IDLE_CLOSE_INTERVAL = 60  # idle conversations close within a minute of IDLE_CLOSE_MINUTES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron", action="store_true", help="run the periodic scheduler instead of a worker")
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", help="worker name (default: host and pid)")
    args = parser.parse_args(argv)

    app = create_app()
    with app.app_context():
        connection = get_redis(app)
        if args.cron:
            cron = CronScheduler(connection=connection, logging_level=app.config["LOG_LEVEL"])
            cron.register(jobs.sweep_outbox, queue_name=jobs.QUEUE_NAME, interval=app.config["SWEEP_INTERVAL"],
                          job_timeout=jobs.JOB_TIMEOUT, result_ttl=300)
            cron.register(jobs.poll_desk_status, queue_name=jobs.QUEUE_NAME, interval=DESK_POLL_INTERVAL,
                          job_timeout=jobs.JOB_TIMEOUT, result_ttl=300)
            cron.register(jobs.check_sla, queue_name=jobs.QUEUE_NAME, interval=SLA_CHECK_INTERVAL,
                          job_timeout=jobs.JOB_TIMEOUT, result_ttl=300)
            cron.register(jobs.close_idle_conversations, queue_name=jobs.QUEUE_NAME, interval=IDLE_CLOSE_INTERVAL,
                          job_timeout=jobs.JOB_TIMEOUT, result_ttl=300)
            cron.start()
            return
        worker = Worker([jobs.QUEUE_NAME], connection=connection, name=args.name)
        worker.work(with_scheduler=True, burst=args.burst, logging_level=app.config["LOG_LEVEL"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
