"""Identity verification against the customer directory, the seed's ladder: the username, then the
last four digits of the phone on file; if wrong, the security question; if wrong again, escalation.

Answers are compared and discarded: the transcript stores them masked and they never leave this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import directory
from ..models import Conversation
from . import validation as v

USERNAME, PHONE, QUESTION = "username", "phone", "question"
# Typos in the username (not found) are forgiven this many times before a person takes over.
MAX_LOOKUPS = 3
# Wrong answers allowed: the phone digits, then the security question.
MAX_FAILURES = 2


@dataclass
class Outcome:
    status: str  # ask | invalid (badly formed answer: re-prompt) | verified | failed
    replies: list[str] = field(default_factory=list)
    reason: str = ""


def _state(conv: Conversation) -> dict:
    return dict(conv.state.get("verify") or {})


def _save(conv: Conversation, state: dict) -> None:
    conv.state = {**conv.state, "verify": state}


def expects_secret(conv: Conversation) -> bool:
    """True while the next customer line is a verification answer (stored masked)."""
    return conv.verification == "pending" and _state(conv).get("stage") in (PHONE, QUESTION)


def attempts_left(conv: Conversation) -> int:
    return max(0, MAX_FAILURES - (conv.verify_failures or 0))


def start(conv: Conversation) -> Outcome:
    conv.verification = "pending"
    conv.verify_failures = 0
    _save(conv, {"stage": USERNAME, "lookups": 0})
    return Outcome("ask", ["First I need to confirm it's you. What's your username? "
                           "(usually firstname.lastname, or your work e-mail)"])


def handle(conv: Conversation, answer: str) -> Outcome:
    state = _state(conv)
    stage = state.get("stage", USERNAME)
    if stage == USERNAME:
        return _username(conv, state, answer)
    customer = directory.get_customer(state.get("customer_id"))
    if customer is None:  # the directory changed under us: start the ladder again
        return start(conv)
    if stage == PHONE:
        try:
            digits = v.last_four(answer)
        except v.Invalid as exc:
            return Outcome("invalid", [str(exc)])
        if directory.phone_matches(customer, digits):
            return _verified(conv, customer)
        conv.verify_failures = (conv.verify_failures or 0) + 1
        if customer.security_question and customer.security_answer_hash:
            _save(conv, {**state, "stage": QUESTION})
            return Outcome("ask", ["That doesn't match what we have on file. Let's try another way.",
                                   f"Security question: {customer.security_question}"])
        return _failed(conv, "phone digits did not match and no security question is on file")
    if customer.check_security_answer(answer):
        return _verified(conv, customer)
    conv.verify_failures = (conv.verify_failures or 0) + 1
    return _failed(conv, "phone digits and security answer did not match")


def _username(conv: Conversation, state: dict, answer: str) -> Outcome:
    try:
        name = v.username(answer)
    except v.Invalid as exc:
        return Outcome("invalid", [str(exc)])
    customer = directory.find_customer(name)
    if customer is None:
        state["lookups"] = state.get("lookups", 0) + 1
        _save(conv, state)
        if state["lookups"] >= MAX_LOOKUPS:
            return _failed(conv, "username not found in the directory")
        return Outcome("ask", ["I couldn't find that username. Please check the spelling; it's usually "
                               "firstname.lastname or your work e-mail address."])
    conv.data = {**conv.data, "username": customer.username}
    _save(conv, {"stage": PHONE, "customer_id": customer.id, "lookups": state.get("lookups", 0)})
    if not customer.phone:
        if customer.security_question and customer.security_answer_hash:
            _save(conv, {"stage": QUESTION, "customer_id": customer.id})
            return Outcome("ask", [f"Thanks. Security question: {customer.security_question}"])
        return _failed(conv, "no phone or security question on file")
    return Outcome("ask", ["Thanks. Please enter the last four digits of the phone number on your account."])


def _verified(conv: Conversation, customer) -> Outcome:
    conv.verification = "verified"
    conv.customer_id = customer.id
    _save(conv, {"stage": "done", "customer_id": customer.id})
    first = customer.name.split()[0] if customer.name else ""
    return Outcome("verified", [f"Thank you{', ' + first if first else ''}, you're verified."])


def _failed(conv: Conversation, reason: str) -> Outcome:
    conv.verification = "failed"
    _save(conv, {"stage": "failed"})
    return Outcome("failed", [], reason)
