"""The durable copy of Zoho Desk's THRESHOLD_EXCEEDED block (docs/desk.md, "Limits shared by all
processes"). Redis holds the block every call checks; a Redis restart without persistence, or a flush,
would forget it and let the workers call Desk before its Retry-After ends. So the block is written to
the database too, and a client that finds no block in Redis looks here before calling.

Its own connections, not the caller's session: a block stays recorded when the job that met it rolls
back, and writing it never commits the job's work. The database being away never stops a Desk call
(Redis stays the primary copy): the failure is logged.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import clock
from ..models import DeskBlock

log = logging.getLogger(__name__)

_TABLE = DeskBlock.__table__


class DatabaseBlocks:
    def __init__(self, engine):
        self.engine = engine

    def extend(self, key: str, seconds: float) -> None:
        """Block until `seconds` from now, unless a longer block is already recorded."""
        until = clock.now() + timedelta(seconds=seconds)
        lengthen = update(_TABLE).where(_TABLE.c.key == key, _TABLE.c.until < until).values(until=until)
        try:
            with self.engine.begin() as conn:
                if conn.execute(lengthen).rowcount:
                    return
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(_TABLE).values(key=key, until=until))
            except IntegrityError:  # recorded meanwhile, or already longer: lengthen if it is not
                with self.engine.begin() as conn:
                    conn.execute(lengthen)
        except SQLAlchemyError as exc:
            log.warning("could not record the Desk block in the database (%s); Redis still holds it",
                        type(exc).__name__)

    def remaining(self, key: str) -> float:
        """Seconds left of a recorded block; 0 when none (or the database cannot say)."""
        try:
            with self.engine.connect() as conn:
                until = conn.scalar(select(_TABLE.c.until).where(_TABLE.c.key == key))
        except SQLAlchemyError as exc:
            log.warning("could not read the Desk block from the database (%s)", type(exc).__name__)
            return 0.0
        if until is None:
            return 0.0
        return max(0.0, (until - clock.now()).total_seconds())
