"""The bot's turn: continue the running workflow, start one (intent routing), answer from the
knowledge base, hand over to a person, or make small talk. State lives on the conversation row.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from .. import conversations, escalation
from ..models import AGENT, CLOSED, ESCALATED, Conversation, TicketRequest
from ..salesiq.responses import BotReply
from . import flow, intents, phrases, verification
from .workflows import WORKFLOWS

# Routing thresholds on the classifier's confidence (docs/performance/intents.md shows the calibration).
START_AT = 0.55  # start the workflow straight away
CLARIFY_AT = 0.30  # below START_AT but above this: ask "do you mean ...?"
MAX_NOT_UNDERSTOOD = 3


@dataclass
class Turn:
    reply: BotReply
    ticket: TicketRequest | None = None


def warm_up(app) -> None:
    """Build the intent model and the knowledge index in the background at start-up, so no customer
    waits for either (called from wsgi.py and the demo launcher, not from create_app)."""
    import threading

    from ..knowledge.search import warm

    threading.Thread(target=intents.warm_up, name="intents-warm", daemon=True).start()
    warm(app)


def expects_secret(conv: Conversation) -> bool:
    return verification.expects_secret(conv)


def greet(conv: Conversation | None, visitor_name: str | None) -> BotReply:
    return BotReply([phrases.greeting(visitor_name)], suggestions=phrases.menu())


def respond(conv: Conversation, text: str) -> Turn:
    if conv.status == AGENT:
        # An agent has taken over: the bot stays silent on this chat.
        return Turn(BotReply([], silent=True))
    if conv.status == ESCALATED:
        return Turn(BotReply(["Thanks, I've added that to your conversation. A member of our support team "
                              "will be with you shortly."]))
    if conv.status == CLOSED:  # a closed conversation never reaches the bot; intake opens a new one
        return Turn(BotReply(["This conversation has ended. Please start a new chat."]))

    command = phrases.command(text)
    if command == phrases.HUMAN:
        return Turn(hand_over(conv, "customer_request"))
    if conv.step is not None:
        return flow.continue_workflow(conv, text, command)
    return _route(conv, text, command)


def _route(conv: Conversation, text: str, command: str | None) -> Turn:
    pending = conv.state.get("pending")
    if pending:
        turn = _answer_pending(conv, text, pending)
        if turn is not None:
            return turn
    chosen = phrases.MENU.get(text.strip())
    if chosen == "something_else" or command == phrases.SWITCH and len(text.split()) <= 4:
        _set_pending(conv, None)
        return Turn(BotReply(["Sure. Please describe the problem in a sentence or two."]))
    if chosen == "human_agent":
        return Turn(hand_over(conv, "customer_request"))
    if chosen in WORKFLOWS:
        return flow.start(conv, WORKFLOWS[chosen])

    result = intents.classify(text)
    conversations.record_event(conv, "intent", f"{result.intent} {result.confidence:.2f}")
    if result.intent == "human_agent" and result.confidence >= CLARIFY_AT:
        return Turn(hand_over(conv, "customer_request"))
    if result.intent in WORKFLOWS and result.confidence >= START_AT:
        return flow.start(conv, WORKFLOWS[result.intent])
    if result.intent == "smalltalk" and result.confidence >= START_AT:
        _set_pending(conv, None)
        return Turn(BotReply([phrases.smalltalk(text)], suggestions=phrases.menu()))
    answer = _knowledge_answer(conv, text, result)
    if answer is not None:
        return answer
    if result.intent in WORKFLOWS and result.confidence >= CLARIFY_AT:
        _set_pending(conv, {"kind": "clarify", "intent": result.intent})
        title = WORKFLOWS[result.intent].title
        return Turn(BotReply([f"Just to be sure: is this about {title.lower()}?"], suggestions=["Yes", "No"]))
    return _not_understood(conv)


def _answer_pending(conv: Conversation, text: str, pending: dict) -> Turn | None:
    """The customer answers a yes/no the bot asked outside a workflow (clarification, "did this help?")."""
    from . import validation

    try:
        yes = validation.yes_no(text)
    except validation.Invalid:
        _set_pending(conv, None)  # they moved on: route the new message normally
        return None
    _set_pending(conv, None)
    if pending["kind"] == "clarify":
        if yes:
            return flow.start(conv, WORKFLOWS[pending["intent"]])
        return Turn(BotReply(["No problem. Could you describe the problem in a little more detail?"]))
    if pending["kind"] == "kb_feedback":
        conversations.record_event(conv, "kb_feedback", f"{pending.get('slug')} {'helpful' if yes else 'not helpful'}")
        if yes:
            return Turn(BotReply(["Great! Is there anything else I can help with?"]))
        offer = pending.get("intent")
        if offer in WORKFLOWS:
            _set_pending(conv, {"kind": "clarify", "intent": offer})
            return Turn(BotReply([f"Sorry about that. Shall I open a {WORKFLOWS[offer].title.lower()} request "
                                  "with our engineers?"], suggestions=["Yes", "No", "Talk to a person"]))
        return Turn(BotReply(["Sorry about that. Would you like to talk to a person, or describe the problem "
                              "differently?"], suggestions=["Talk to a person", "Something else"]))
    return None


def _knowledge_answer(conv: Conversation, text: str, result) -> Turn | None:
    from ..knowledge import search

    hit, confidence = search.best_answer(text)
    if hit is None or confidence < search.ANSWER_THRESHOLD:
        return None
    offer = next((label for label, _ in ((result.intent, result.confidence), *result.alternatives)
                  if label in WORKFLOWS), None)
    _set_pending(conv, {"kind": "kb_feedback", "slug": hit.slug, "intent": offer})
    conv.state = {**conv.state, "not_understood": 0}
    conversations.record_event(conv, "kb_answer", f"{hit.slug} {confidence:.2f}")
    link = f"{current_app.config['PUBLIC_URL']}/kb/{hit.slug}"
    answer = hit.extract
    if current_app.config.get("LLM_API_URL"):
        from ..knowledge.compose import compose_answer

        identity = (conv.visitor_name, conv.visitor_email, conv.visitor_phone)
        answer = compose_answer(text, [hit], identity=identity) or hit.extract
    return Turn(BotReply([answer, f"📄 {hit.title}: {link}", "Did this help?"], suggestions=["Yes", "No"]))


def _not_understood(conv: Conversation) -> Turn:
    misses = conv.state.get("not_understood", 0) + 1
    conv.state = {**conv.state, "not_understood": misses}
    if misses >= MAX_NOT_UNDERSTOOD:
        return Turn(hand_over(conv, "bot_stuck"))
    return Turn(BotReply(["I'm not sure I understood. I can help with passwords, locked accounts, remote desktop, "
                          "server speed, QuickBooks, e-mail, printers and more, or connect you with a person."],
                         suggestions=phrases.menu()))


def _set_pending(conv: Conversation, pending: dict | None) -> None:
    state = dict(conv.state)
    if pending is None:
        state.pop("pending", None)
    else:
        state["pending"] = pending
    conv.state = state


def hand_over(conv: Conversation, reason: str) -> BotReply:
    """Escalate and answer with SalesIQ's `forward` to the configured department."""
    escalation.escalate(conv, reason)
    kind = {
        "verification_failed": "I'm sorry, I couldn't verify your identity, so I can't make this change from "
                               "the chat. I'm connecting you with a member of our support team, who will "
                               "verify you another way.",
        "customer_request": "Of course. I'm connecting you with a member of our support team now.",
        "bot_stuck": "I'm sorry I couldn't help directly. I'm connecting you with a member of our support team.",
    }.get(reason, "I'm connecting you with a member of our support team.")
    replies = [kind]
    if conv.latest_ticket is not None and conv.latest_ticket.ticket_status == "Escalated":
        replies.append("I've passed on everything you told me, so you won't need to repeat yourself.")
    return BotReply(replies, action="forward", department=current_app.config.get("SALESIQ_DEPARTMENT_ID"))
