"""Public article pages: the link the bot gives with a knowledge answer (`/kb/<slug>`).

Articles are the provider's own published help, so they are readable without signing in; the page
shows the cleaned text of the Markdown (never raw HTML) and nothing about customers.
"""
from flask import Blueprint, abort, render_template
from sqlalchemy import select

from ..extensions import db
from ..models import Article
from .markdown import blocks

bp = Blueprint("kb", __name__, url_prefix="/kb")


@bp.get("/<slug>")
def article(slug: str):
    item = db.session.scalar(select(Article).where(Article.slug == slug))
    if item is None:
        abort(404, "No such article.")
    sections = []
    for block in blocks(item.body):
        if not sections or sections[-1]["heading"] != block.heading:
            sections.append({"heading": block.heading, "blocks": []})
        sections[-1]["blocks"].append(block)
    return render_template("kb/article.html", article=item, sections=sections)
