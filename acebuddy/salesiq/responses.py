"""The SalesIQ bot response format (specs/salesiq-webhook.md §4): `action`, `replies` always a list,
then `suggestions` or one `input` card, never both; `forward` names a department.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Select cards allow 20 options of 80 characters (spec §4); suggestions are kept as short.
MAX_OPTIONS = 20
MAX_OPTION_LEN = 80


@dataclass
class BotReply:
    replies: list = field(default_factory=list)  # strings, or {"text", ...} objects
    action: str = "reply"  # reply | forward | end
    suggestions: list[str] | None = None
    input: dict | None = None
    department: str | None = None
    # Not sent to SalesIQ: the bot's own note on what happened, for the timeline.
    silent: bool = False

    def texts(self) -> list[str]:
        return [r if isinstance(r, str) else str(r.get("text", "")) for r in self.replies]

    def to_json(self) -> dict:
        body: dict = {"action": self.action, "replies": list(self.replies)}
        if self.action == "forward":
            if self.department:
                body["department"] = str(self.department)
            return body
        if self.input:
            body["input"] = _clip_card(self.input)
        elif self.suggestions:
            body["suggestions"] = [s[:MAX_OPTION_LEN] for s in self.suggestions[:MAX_OPTIONS]]
        return body


def _clip_card(card: dict) -> dict:
    card = dict(card)
    if "options" in card:
        card["options"] = [str(o)[:MAX_OPTION_LEN] for o in card["options"][:MAX_OPTIONS]]
    return card


def email_card(placeholder: str = "name@company.com") -> dict:
    return {"type": "email", "placeholder": placeholder, "error": ["Please enter a valid e-mail address"]}


def tel_card(placeholder: str = "Phone number") -> dict:
    return {"type": "tel", "placeholder": placeholder, "error": ["Please enter a valid phone number"]}


def select_card(options: list[str]) -> dict:
    return {"type": "select", "options": list(options)}
