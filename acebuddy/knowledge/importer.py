"""Loading knowledge articles from Markdown files with front matter (CONTRACT.md, "Data files").

A directory is validated whole before anything is written: one bad file means nothing is loaded and
every problem is reported, each naming its file. Articles are upserted by slug.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import yaml
from sqlalchemy import select

from ..extensions import db
from ..models import Article

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG, MAX_TITLE, MAX_CATEGORY, MAX_TAG = 120, 300, 80, 60
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)(.*)\Z", re.S)
_EMPTY_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)(.*)\Z", re.S)
_LINE = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*)$")


class ArticleFormatError(ValueError):
    """A knowledge file that cannot be loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class ParsedArticle:
    slug: str
    title: str
    category: str | None
    tags: list[str]
    body: str
    source: str = "<string>"


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def parse_article(text: str, source: str = "<string>") -> ParsedArticle:
    """Front matter between `---` lines (title, slug, category, tags as `[a, b]` or a YAML list),
    then the Markdown body. Raises ArticleFormatError naming `source` and the problem."""
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text)
    if match:
        header, body = match.group(1), match.group(2)
    else:
        empty = _EMPTY_FRONT_MATTER.match(text)
        if not empty:
            if text.startswith("---"):
                raise ArticleFormatError(f"{source}: front matter is not closed by a '---' line")
            raise ArticleFormatError(f"{source}: no front matter (the file must begin with a '---' line)")
        header, body = "", empty.group(1)
    meta = _read_header(header, source)

    def scalar(key: str) -> str | None:
        value = meta.get(key)
        if value is None:
            return None
        if isinstance(value, (list, dict)):
            raise ArticleFormatError(f"{source}: '{key}' must be a single line of text")
        value = " ".join(str(value).split())
        return value or None

    title, slug, category = scalar("title"), scalar("slug"), scalar("category")
    if not title:
        raise ArticleFormatError(f"{source}: missing 'title' in front matter")
    if not slug:
        raise ArticleFormatError(f"{source}: missing 'slug' in front matter")
    if len(slug) > MAX_SLUG or not SLUG.match(slug):
        raise ArticleFormatError(
            f"{source}: slug {slug!r} must be lower-case letters, digits and single hyphens "
            f"(at most {MAX_SLUG} characters)"
        )
    if len(title) > MAX_TITLE:
        raise ArticleFormatError(f"{source}: title is longer than {MAX_TITLE} characters")
    if category and len(category) > MAX_CATEGORY:
        raise ArticleFormatError(f"{source}: category is longer than {MAX_CATEGORY} characters")
    tags = _tags(meta.get("tags"), source)
    body = body.strip()
    if not body:
        raise ArticleFormatError(f"{source}: the article has no body after the front matter")
    return ParsedArticle(slug=slug, title=title, category=category, tags=tags, body=body, source=source)


def _read_header(header: str, source: str) -> dict:
    """YAML without type guessing (`0x204` stays text, `yes` is not True); a plain `key: value`
    reading when the YAML is invalid, such as an unquoted colon in a title."""
    try:
        meta = yaml.load(header, Loader=yaml.BaseLoader) if header.strip() else {}
    except yaml.YAMLError:
        meta = _read_plain_header(header, source)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ArticleFormatError(f"{source}: front matter must be 'key: value' lines")
    return {str(k).strip().lower(): v for k, v in meta.items()}


def _read_plain_header(header: str, source: str) -> dict:
    meta: dict = {}
    key = None
    for number, line in enumerate(header.splitlines(), start=2):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = re.match(r"^\s*-\s+(.*)$", line)
        if item and key is not None:
            if not isinstance(meta.get(key), list):
                meta[key] = []
            meta[key].append(_unquote(item.group(1)))
            continue
        match = _LINE.match(line)
        if not match:
            raise ArticleFormatError(f"{source}: line {number} of the front matter is not 'key: value'")
        key, value = match.group(1).lower(), match.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            meta[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            meta[key] = _unquote(value) if value else None
    return meta


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _tags(value, source: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        value = value.split(",")
    if not isinstance(value, list):
        raise ArticleFormatError(f"{source}: 'tags' must be a list such as [printer, rdp]")
    tags: list[str] = []
    for tag in value:
        if isinstance(tag, (list, dict)):
            raise ArticleFormatError(f"{source}: each tag must be a single word or phrase")
        tag = " ".join(_unquote(str(tag)).split())
        if not tag:
            continue
        if len(tag) > MAX_TAG:
            raise ArticleFormatError(f"{source}: tag {tag[:20]!r}... is longer than {MAX_TAG} characters")
        if tag not in tags:
            tags.append(tag)
    return tags


def find_article_files(path: str) -> list[str]:
    """Every `*.md` file under `path`, recursively, in a stable order; hidden folders skipped."""
    found = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(root, f) for f in sorted(files) if f.lower().endswith(".md"))
    return found


def read_directory(path: str) -> tuple[list[ParsedArticle], list[str]]:
    """Parse every article under `path`; returns the articles and the list of problems."""
    if not os.path.isdir(path):
        return [], [f"{path}: not a directory"]
    articles, errors = [], []
    by_slug: dict[str, str] = {}
    for file_path in find_article_files(path):
        shown = os.path.relpath(file_path, path)
        try:
            with open(file_path, encoding="utf-8-sig") as fh:
                content = fh.read()
        except UnicodeDecodeError:
            errors.append(f"{shown}: not valid UTF-8 text")
            continue
        except OSError as exc:
            errors.append(f"{shown}: cannot be read ({exc.strerror})")
            continue
        try:
            article = parse_article(content, shown)
        except ArticleFormatError as exc:
            errors.append(str(exc))
            continue
        if article.slug in by_slug:
            errors.append(f"{shown}: slug {article.slug!r} is already used by {by_slug[article.slug]}")
            continue
        by_slug[article.slug] = shown
        articles.append(article)
    return articles, errors


def import_directory(path: str, *, dry_run: bool = False) -> ImportResult:
    """Load or update every article under `path` (upsert by slug) and commit; needs an app context.
    When any file is bad nothing is written and `errors` lists every problem. Articles missing from
    the directory are left alone. `dry_run` counts what would change and writes nothing."""
    articles, errors = read_directory(path)
    if errors:
        return ImportResult(errors=errors)
    result = ImportResult()
    existing: dict[str, Article] = {}
    slugs = [a.slug for a in articles]
    for start in range(0, len(slugs), 500):
        chunk = slugs[start: start + 500]
        for row in db.session.scalars(select(Article).where(Article.slug.in_(chunk))):
            existing[row.slug] = row
    try:
        for article in articles:
            row = existing.get(article.slug)
            if row is None:
                result.created += 1
                if not dry_run:
                    db.session.add(Article(slug=article.slug, title=article.title, category=article.category,
                                           tags=list(article.tags), body=article.body))
            elif (row.title, row.category, list(row.tags or []), row.body) == (
                article.title, article.category, article.tags, article.body
            ):
                result.unchanged += 1
            else:
                result.updated += 1
                if not dry_run:
                    row.title, row.category, row.tags, row.body = (
                        article.title, article.category, list(article.tags), article.body
                    )
        if dry_run:
            db.session.rollback()
        else:
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    if not dry_run and (result.created or result.updated):
        from .search import invalidate

        invalidate()
    return result
