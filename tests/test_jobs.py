"""The sweep's judgement of whether a row's job is still alive (`jobs.is_queued`), on a real Redis, and
the outbox's sending lease."""
from __future__ import annotations

from datetime import timedelta

from acebuddy import clock, jobs, notifications


def test_a_waiting_job_is_queued(app_ctx):
    jobs.enqueue(jobs.deliver_notification, 41)
    assert jobs.is_queued(jobs.deliver_notification, 41, started_grace=60)
    assert not jobs.is_queued(jobs.deliver_notification, 42, started_grace=60)  # never enqueued


def test_a_job_is_queued_or_scheduled_in_one_multi_exec(app_ctx, monkeypatch):
    """RQ's enqueue, given the pipeline, adds everything to it: the queue's name in RQ's set of queues,
    the job, and its place in the queue (or in the scheduled registry), sent at once."""
    import redis
    from rq import Queue
    from rq.registry import ScheduledJobRegistry

    sent = []
    execute = redis.client.Pipeline.execute

    def counted(pipe, *args, **kwargs):
        sent.append(len(pipe.command_stack))
        return execute(pipe, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted)
    now = jobs.enqueue(jobs.deliver_notification, 51)
    later = jobs.enqueue(jobs.deliver_notification, 52, at=clock.now() + timedelta(minutes=5))
    monkeypatch.undo()
    assert len(sent) == 2 and all(n >= 3 for n in sent)
    queue = jobs.get_queue()
    assert now.id in queue.get_job_ids() and queue in Queue.all(connection=queue.connection)
    assert later.id in ScheduledJobRegistry(queue=queue).get_job_ids()
    assert later.id not in queue.get_job_ids()
    assert jobs.is_queued(jobs.deliver_notification, 51, started_grace=60)
    assert jobs.is_queued(jobs.deliver_notification, 52, started_grace=60)


def test_a_job_taken_off_the_queue_by_a_dead_worker_is_lost_after_the_grace(app_ctx, monkeypatch):
    """RQ moves a job to its intermediate list as a worker takes it; a worker killed right then leaves it
    "queued" in no queue. It must count as lost (and be queued again), not wait for RQ's maintenance."""
    job = jobs.enqueue(jobs.deliver_notification, 7)
    jobs.get_queue().remove(job.id)  # what the dying worker's dequeue did, minus the start
    assert job.get_status(refresh=True) == "queued"
    assert jobs.is_queued(jobs.deliver_notification, 7, started_grace=60)  # just taken: give it a moment
    later = clock.now() + timedelta(seconds=16)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert not jobs.is_queued(jobs.deliver_notification, 7, started_grace=60)
    assert jobs.requeue_missing(jobs.deliver_notification, [7], started_grace=60) == 1
    assert jobs.get_queue().get_job_position(jobs.job_id(jobs.deliver_notification, 7)) == 0


def test_a_waiting_job_stays_queued_however_long_it_waits(app_ctx, monkeypatch):
    jobs.enqueue(jobs.deliver_notification, 8)
    later = clock.now() + timedelta(hours=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert jobs.is_queued(jobs.deliver_notification, 8, started_grace=60)
    assert jobs.requeue_missing(jobs.deliver_notification, [8], started_grace=60) == 0


def test_the_sending_lease_scales_with_the_backoff_but_never_under_three_timeouts(app):
    with app.app_context():
        app.config.update(OUTBOX_BACKOFF_SCALE=1.0, MAIL_TIMEOUT=10.0, SALESIQ_TIMEOUT=10.0, DESK_TIMEOUT=10.0)
        assert notifications.sending_lease() == notifications.SENDING_LEASE  # production: 180 s
        app.config.update(OUTBOX_BACKOFF_SCALE=0.05, MAIL_TIMEOUT=2.0, SALESIQ_TIMEOUT=2.0, DESK_TIMEOUT=2.0)
        assert notifications.sending_lease() == 9.0  # 180 x 0.05
        app.config.update(DESK_TIMEOUT=5.0)
        assert notifications.sending_lease() == 15.0  # a delivery may still be on the wire


def test_the_sweep_reads_the_queue_once_for_all_its_rows(app_ctx, monkeypatch):
    from rq import Queue

    for object_id in range(1, 6):
        jobs.enqueue(jobs.deliver_notification, object_id)
    reads = []
    real = Queue.get_job_ids
    monkeypatch.setattr(Queue, "get_job_ids", lambda self, *a, **k: reads.append(1) or real(self, *a, **k))
    assert jobs.requeue_missing(jobs.deliver_notification, range(1, 8), started_grace=60) == 2  # 6 and 7
    assert len(reads) == 1
