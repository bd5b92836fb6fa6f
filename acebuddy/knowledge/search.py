"""Searching the knowledge base: ranked hits with extracts, and the bot's best answer with a confidence.

Each app keeps one in-memory index per process, built at the first search (or by `warm()`), then kept
current: a cheap version query (count, max id, max updated_at of Article) runs at most every
CHECK_INTERVAL seconds, and when it changed a background thread builds the new index while searches
go on answering from the old one. `import_directory` calls `invalidate()`, so its own process sees
the new articles at its next search.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..models import Article
from .index import Index, Source

# The bot answers from the knowledge base only at or above this confidence, otherwise it says it is
# not sure (see docs/performance/knowledge.md for how it was chosen).
ANSWER_THRESHOLD = 0.55
CHECK_INTERVAL = 3.0  # seconds between version checks against the database
_EXTENSION_KEY = "acebuddy_knowledge_index"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    """One ranked article: `extract` is the passage that answers the question, as plain text."""

    slug: str
    title: str
    score: float
    extract: str
    category: str | None


def search(query: str, limit: int = 5) -> list[Hit]:
    """The articles that best answer `query`, best first (at most `limit`); [] for an empty query."""
    if not query or not query.strip() or limit <= 0:
        return []
    index = _holder().get()
    return [Hit(r.slug, r.title, r.score, r.extract, r.category) for r in index.search(query, limit)]


def best_answer(query: str) -> tuple[Hit | None, float]:
    """The top hit and how sure we are it answers the question (0..1); compare with ANSWER_THRESHOLD."""
    if not query or not query.strip():
        return None, 0.0
    results = _holder().get().search(query, 1)
    if not results:
        return None, 0.0
    top = results[0]
    return Hit(top.slug, top.title, top.score, top.extract, top.category), top.confidence


def invalidate(app=None) -> None:
    """Forget the index of `app` (default: the current app) so the next search rebuilds it."""
    app = app or current_app._get_current_object()
    holder = app.extensions.get(_EXTENSION_KEY)
    if holder is not None:
        holder.drop()


def warm(app=None, *, background: bool = True) -> None:
    """Build the index ahead of the first question (a 10,000-article base takes seconds)."""
    app = app or current_app._get_current_object()
    holder = _holder(app)
    if not background:
        with app.app_context():
            holder.get(app)
        return
    threading.Thread(target=holder.rebuild, args=(app,), name="kb-index-warm", daemon=True).start()


def _holder(app=None) -> _IndexHolder:
    app = app or current_app._get_current_object()
    holder = app.extensions.get(_EXTENSION_KEY)
    if holder is None:
        holder = app.extensions.setdefault(_EXTENSION_KEY, _IndexHolder())
    return holder


class _IndexHolder:
    """One app's index, its version, and when the version was last checked. Thread-safe: the index
    is immutable once built and swapped in whole."""

    def __init__(self):
        self._lock = threading.Lock()
        self._index: Index | None = None
        self._version: tuple | None = None
        self._checked = 0.0
        self._rebuilding = False
        self._generation = 0  # bumped by drop(), so a rebuild started before it is thrown away

    def drop(self) -> None:
        with self._lock:
            self._index, self._version, self._checked = None, None, 0.0
            self._generation += 1

    def get(self, app=None) -> Index:
        index = self._index
        if index is not None and time.monotonic() - self._checked < CHECK_INTERVAL:
            return index
        if index is None:
            with self._lock:  # the first build: everyone waits for it
                if self._index is None:
                    self._index, self._version = _build()
                    self._checked = time.monotonic()
                return self._index
        with self._lock:
            if time.monotonic() - self._checked < CHECK_INTERVAL or self._rebuilding:
                return self._index
            self._checked = time.monotonic()
            try:
                stale = _version() != self._version
            except SQLAlchemyError:
                db.session.rollback()
                log.warning("knowledge base version check failed; searching the index we have", exc_info=True)
                return index
            if stale:
                self._rebuilding = True
        if stale:
            app = app or current_app._get_current_object()
            threading.Thread(target=self.rebuild, args=(app,), name="kb-index-rebuild", daemon=True).start()
        return index

    def rebuild(self, app) -> None:
        generation = self._generation
        try:
            with app.app_context():
                try:
                    index, version = _build()
                except SQLAlchemyError:
                    log.exception("knowledge base index rebuild failed; keeping the index we have")
                    return
            with self._lock:
                if generation == self._generation:
                    self._index, self._version = index, version
                    self._checked = time.monotonic()
        finally:
            self._rebuilding = False


def _version() -> tuple:
    row = db.session.execute(
        select(func.count(Article.id), func.max(Article.id), func.max(Article.updated_at))
    ).one()
    return tuple(row)


def _build() -> tuple[Index, tuple]:
    rows = db.session.execute(
        select(Article.id, Article.slug, Article.title, Article.category, Article.tags, Article.body,
               Article.updated_at).order_by(Article.id)
    ).all()
    sources = [Source(r.slug, r.title, r.category, tuple(r.tags) if isinstance(r.tags, list) else (), r.body or "")
               for r in rows]
    version = (len(rows), max((r.id for r in rows), default=None),
               max((r.updated_at for r in rows), default=None))
    return Index(sources), version
