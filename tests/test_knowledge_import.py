"""Knowledge articles from Markdown: front matter parsing, validation, and the all-or-nothing import."""
import os
import textwrap

import pytest

from acebuddy.extensions import db
from acebuddy.knowledge import ArticleFormatError, import_directory, parse_article
from acebuddy.knowledge.search import search
from acebuddy.models import Article

DEMO_KB = os.path.join(os.path.dirname(os.path.dirname(__file__)), "acebuddy", "demo_data", "kb")

PRINTER = """\
---
title: How to map a local printer into your hosted desktop
slug: map-local-printer
category: printing
tags: [printer, rdp, redirection]
---
Tick **Printers** on the *Local Resources* tab.
"""


def write(folder, name, content):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(content), encoding="utf-8")
    return path


def article(slug, title="A title", body="Some body text.", tags="[a, b]"):
    return f"---\ntitle: {title}\nslug: {slug}\ncategory: general\ntags: {tags}\n---\n{body}\n"


def test_parse_reads_front_matter_and_body():
    parsed = parse_article(PRINTER, "printer.md")
    assert parsed.slug == "map-local-printer"
    assert parsed.title == "How to map a local printer into your hosted desktop"
    assert parsed.category == "printing"
    assert parsed.tags == ["printer", "rdp", "redirection"]
    assert parsed.body == "Tick **Printers** on the *Local Resources* tab."


def test_parse_accepts_yaml_list_tags_quotes_and_no_category():
    parsed = parse_article(textwrap.dedent("""\
        ---
        title: "Outlook: keeps asking for a password"
        slug: outlook-prompts
        tags:
          - outlook
          - 'password-prompt'
        ---
        Body.
        """))
    assert parsed.title == "Outlook: keeps asking for a password"
    assert parsed.tags == ["outlook", "password-prompt"]
    assert parsed.category is None


def test_parse_keeps_codes_and_yes_no_as_text():
    # YAML would read 0x204 as the number 516 and "yes" as True.
    parsed = parse_article("---\ntitle: Error 0x204\nslug: rdp-0x204\ntags: [0x204, 6123, yes, on]\n---\nBody\n")
    assert parsed.tags == ["0x204", "6123", "yes", "on"]


def test_parse_tolerates_an_unquoted_colon_in_the_title():
    parsed = parse_article("---\ntitle: QuickBooks: error H202\nslug: qb-h202\ntags: [quickbooks, h202]\n---\nBody\n")
    assert parsed.title == "QuickBooks: error H202"
    assert parsed.tags == ["quickbooks", "h202"]


def test_parse_accepts_windows_line_endings_and_a_byte_order_mark():
    parsed = parse_article("\ufeff" + PRINTER.replace("\n", "\r\n"))
    assert parsed.slug == "map-local-printer"
    assert parsed.tags == ["printer", "rdp", "redirection"]
    assert parsed.body.startswith("Tick **Printers**")


def test_parse_accepts_comma_separated_tags_and_drops_duplicates():
    parsed = parse_article("---\ntitle: T\nslug: t\ntags: printer, rdp, printer\n---\nBody\n")
    assert parsed.tags == ["printer", "rdp"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("---\nslug: no-title\n---\nBody\n", "missing 'title'"),
        ("---\ntitle: No slug\n---\nBody\n", "missing 'slug'"),
        ("---\ntitle: T\nslug: Not A Slug\n---\nBody\n", "slug 'Not A Slug'"),
        ("---\ntitle: T\nslug: ok\n---\n\n   \n", "no body"),
        ("Just text, no front matter.\n", "no front matter"),
        ("---\ntitle: T\nslug: ok\nBody without a closing line\n", "not closed"),
        ("---\ntitle: T\nslug: ok\ntags: {a: 1}\n---\nBody\n", "'tags' must be a list"),
        ("---\n- just\n- a list\n---\nBody\n", "'key: value'"),
    ],
)
def test_parse_errors_name_the_file_and_the_problem(content, problem):
    with pytest.raises(ArticleFormatError) as caught:
        parse_article(content, "kb/broken.md")
    assert str(caught.value).startswith("kb/broken.md: ")
    assert problem in str(caught.value)


def test_import_loads_every_markdown_file_under_the_folder(app_ctx, tmp_path):
    write(tmp_path, "printer.md", PRINTER)
    write(tmp_path, "email/phone.md", article("email-on-phone", "E-mail on your phone"))
    write(tmp_path, "notes.txt", "not an article")
    write(tmp_path, ".drafts/draft.md", "no front matter: hidden folders are skipped")

    result = import_directory(str(tmp_path))

    assert (result.created, result.updated, result.unchanged, result.errors) == (2, 0, 0, [])
    row = db.session.scalar(db.select(Article).filter_by(slug="map-local-printer"))
    assert row.title == "How to map a local printer into your hosted desktop"
    assert row.category == "printing"
    assert row.tags == ["printer", "rdp", "redirection"]
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 2


def test_one_bad_file_loads_nothing_and_every_problem_is_reported(app_ctx, tmp_path):
    write(tmp_path, "good.md", article("good-one"))
    write(tmp_path, "no-title.md", "---\nslug: no-title\n---\nBody\n")
    write(tmp_path, "sub/no-slug.md", "---\ntitle: No slug\n---\nBody\n")

    result = import_directory(str(tmp_path))

    assert (result.created, result.updated, result.unchanged) == (0, 0, 0)
    assert result.errors == [
        "no-title.md: missing 'title' in front matter",
        os.path.join("sub", "no-slug.md") + ": missing 'slug' in front matter",
    ]
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 0


def test_the_same_slug_in_two_files_is_an_error(app_ctx, tmp_path):
    write(tmp_path, "a.md", article("same-slug"))
    write(tmp_path, "b.md", article("same-slug"))
    result = import_directory(str(tmp_path))
    assert result.errors == ["b.md: slug 'same-slug' is already used by a.md"]
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 0


def test_a_file_that_is_not_utf8_is_reported(app_ctx, tmp_path):
    (tmp_path / "latin1.md").write_bytes(article("latin").replace("Some", "Caf\xe9").encode("latin-1"))
    result = import_directory(str(tmp_path))
    assert result.errors == ["latin1.md: not valid UTF-8 text"]


def test_a_missing_folder_is_an_error(app_ctx, tmp_path):
    result = import_directory(str(tmp_path / "nowhere"))
    assert result.errors and "not a directory" in result.errors[0]


def test_reimport_updates_by_slug_and_counts_unchanged(app_ctx, tmp_path):
    write(tmp_path, "printer.md", PRINTER)
    write(tmp_path, "other.md", article("other", body="First version."))
    assert import_directory(str(tmp_path)).created == 2
    first = db.session.scalar(db.select(Article).filter_by(slug="other"))
    first_id, first_updated = first.id, first.updated_at

    write(tmp_path, "other.md", article("other", title="New title", body="Second version.", tags="[c]"))
    write(tmp_path, "third.md", article("third"))
    result = import_directory(str(tmp_path))

    assert (result.created, result.updated, result.unchanged, result.errors) == (1, 1, 1, [])
    row = db.session.scalar(db.select(Article).filter_by(slug="other"))
    assert (row.id, row.title, row.body, row.tags) == (first_id, "New title", "Second version.", ["c"])
    assert row.updated_at >= first_updated
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 3


def test_articles_missing_from_the_folder_are_kept(app_ctx, tmp_path):
    write(tmp_path, "a.md", article("kept-article"))
    import_directory(str(tmp_path))
    (tmp_path / "a.md").unlink()
    write(tmp_path, "b.md", article("new-article"))
    assert import_directory(str(tmp_path)).created == 1
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 2


def test_dry_run_counts_but_writes_nothing(app_ctx, tmp_path):
    write(tmp_path, "printer.md", PRINTER)
    import_directory(str(tmp_path))
    write(tmp_path, "printer.md", PRINTER.replace("Tick", "Please tick"))
    write(tmp_path, "new.md", article("brand-new"))

    result = import_directory(str(tmp_path), dry_run=True)

    assert (result.created, result.updated, result.unchanged) == (1, 1, 0)
    assert db.session.scalar(db.select(db.func.count(Article.id))) == 1
    assert db.session.scalar(db.select(Article.body).filter_by(slug="map-local-printer")).startswith("Tick")


def test_reimport_is_seen_by_the_next_search_at_once(app_ctx, tmp_path):
    write(tmp_path, "printer.md", PRINTER)
    import_directory(str(tmp_path))
    assert [h.slug for h in search("printer")] == ["map-local-printer"]

    write(tmp_path, "zebra.md", article("zebra-labels", "Zebra label printer setup", "Install the Zebra driver."))
    import_directory(str(tmp_path))

    assert search("zebra labels")[0].slug == "zebra-labels"


def test_the_demo_articles_are_valid(app_ctx):
    result = import_directory(DEMO_KB)
    assert result.errors == []
    assert 12 <= result.created <= 20
