"""Command-line interface of CONTRACT.md (`flask --app wsgi ...`)."""
from flask import Flask


def register_commands(app: Flask) -> None:
    pass
