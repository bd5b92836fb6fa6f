"""What the bot says outside workflows (greeting, menu, small talk), and the commands a customer can
use at any step (cancel, start over, change an answer, a different issue, a person).
"""
from __future__ import annotations

import re

# The greeting's quick actions, mapped straight to intents (no classifier guesswork for a click).
MENU = {
    "Reset my password": "password_reset",
    "Unlock my account": "account_locked",
    "Can't connect to my desktop": "rdp_connection",
    "My server is slow": "server_slowness",
    "QuickBooks problem": "quickbooks_issue",
    "E-mail problem": "email_issue",
    "Printer problem": "printer_issue",
    "Something else": "something_else",
    "Talk to a person": "human_agent",
}

CANCEL, RESTART, CHANGE, SWITCH, HUMAN = "cancel", "restart", "change", "switch", "human"

_COMMANDS = [
    (HUMAN, re.compile(r"^(talk to |speak to |speak with |chat with |get me |connect me (to|with) )?"
                       r"(an? )?(human|person|agent|operator|real person|someone|technician|tech|representative|rep)"
                       r"( please| pls| now)?[.!]*$|\b(talk|speak|chat) (to|with) (a|an|some|the) "
                       r"(human|person|agent|operator|real person|someone|technician|representative)\b", re.I)),
    (CANCEL, re.compile(r"^(cancel|stop|quit|exit|abort|never ?mind|nevermind|forget it|no thanks,? cancel)"
                        r"( (it|that|this|please|the request))*[.!]*$", re.I)),
    (RESTART, re.compile(r"^(start over|start again|restart|reset the chat|begin again|from the (start|beginning))"
                         r"( please)?[.!]*$", re.I)),
    (CHANGE, re.compile(r"^(go back|back|change (my |an |that )?answer|change something|edit|i made a mistake|"
                        r"wrong answer|that('s| is| was) wrong|correct (my |an )?answer|undo)( please)?[.!]*$", re.I)),
    (SWITCH, re.compile(r"\b(different|another|other|new|separate) (issue|problem|question|request|thing)\b|"
                        r"\bsomething else\b", re.I)),
]


def command(text: str) -> str | None:
    stripped = text.strip()
    for name, pattern in _COMMANDS:
        if pattern.search(stripped):
            return name
    return None


def greeting(name: str | None) -> str:
    who = f" {name.split()[0]}" if name and not name.lower().startswith("visitor") else ""
    return (f"Hi{who}! I'm AceBuddy, your support assistant. Tell me what's going on in your own words, "
            "or pick one of the common requests below.")


def menu() -> list[str]:
    return list(MENU)


_THANKS = re.compile(r"\b(thanks|thank you|thx|ty|cheers|appreciated?|great help)\b", re.I)
_BYE = re.compile(r"\b(bye|goodbye|see you|that'?s all|that is all|have a (good|nice) (day|one)|done for now)\b", re.I)


def smalltalk(text: str) -> str:
    if _BYE.search(text):
        return "Glad I could help. Have a good day! If anything else comes up, just start a new chat."
    if _THANKS.search(text):
        return "You're welcome! Is there anything else I can help with?"
    return "Hello! What can I help you with today? Describe the problem, or pick one of the requests below."
