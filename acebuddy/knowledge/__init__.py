"""The knowledge base: Markdown articles imported into the database (`importer`) and searched through
an in-memory index per process (`search`, built on `index`, `query`, `text`, `markdown`, `extract`).

`acebuddy.knowledge.search` is the module (`search.search`, `search.best_answer`,
`search.ANSWER_THRESHOLD`); the names below are re-exported for convenience.
"""
from .. import speedups

speedups.use(__name__, __path__)  # before any submodule is imported

from .importer import ArticleFormatError, ImportResult, ParsedArticle, import_directory, parse_article
from .search import ANSWER_THRESHOLD, Hit, best_answer, invalidate, warm

__all__ = [
    "ANSWER_THRESHOLD",
    "ArticleFormatError",
    "Hit",
    "ImportResult",
    "ParsedArticle",
    "best_answer",
    "import_directory",
    "invalidate",
    "parse_article",
    "warm",
]
