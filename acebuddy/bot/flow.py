"""Stepping through a workflow: ask, validate (bounded re-prompts), verify identity, confirm, and file
the ticket; plus the commands that work at any step (cancel, start over, change an answer, switch issue).
"""
from __future__ import annotations

from .. import conversations, tickets
from ..models import Conversation
from ..salesiq.responses import BotReply, select_card
from . import intents, phrases, redaction, verification
from .validation import Invalid, yes_no
from .workflows import VERIFY, WORKFLOWS, Workflow

CONFIRM, CHANGE = "confirm", "change"
# Re-prompts allowed on one step before a person takes over.
MAX_REPROMPTS = 2
# A message that is no answer to the step and names another workflow this confidently switches to it;
# an explicit "different problem: ..." needs less.
SWITCH_AT = 0.85
SWITCH_EXPLICIT_AT = 0.5
CONFIRM_OPTIONS = ["Yes, create the ticket", "Change something", "Cancel"]


def start(conv: Conversation, workflow: Workflow, *, note: str | None = None):
    from .engine import Turn

    conv.workflow = workflow.intent
    conv.priority = workflow.priority
    conv.data = {}
    conv.state = {k: v for k, v in conv.state.items() if k not in ("pending", "verify", "reprompts", "editing")}
    conv.state = {**conv.state, "not_understood": 0}
    conversations.record_event(conv, "workflow_started", workflow.intent)
    replies = [note] if note else []
    if workflow.intro:
        replies.append(workflow.intro)
    if workflow.verify and conv.verification != "verified":
        conv.step = VERIFY
        outcome = verification.start(conv)
        return Turn(BotReply(replies + outcome.replies))
    return Turn(_ask_next(conv, workflow, replies))


def continue_workflow(conv: Conversation, text: str, command: str | None):
    from .engine import Turn, hand_over

    workflow = WORKFLOWS[conv.workflow]
    if command == phrases.CANCEL:
        return Turn(_cancel(conv, workflow))
    if command == phrases.RESTART:
        conversations.record_event(conv, "workflow_restarted", workflow.intent)
        return start(conv, workflow, note="Let's start again.")
    if command == phrases.CHANGE and conv.step not in (VERIFY, CHANGE) and _answered(conv, workflow):
        return Turn(_offer_change(conv, workflow))
    if command == phrases.SWITCH:
        switched = _switch_target(conv, workflow, text, SWITCH_EXPLICIT_AT)
        if switched is not None:
            return _switch(conv, workflow, switched)

    if conv.step == VERIFY:
        outcome = verification.handle(conv, text)
        if outcome.status == "failed":
            conversations.record_event(conv, "verification_failed", outcome.reason)
            return Turn(hand_over(conv, "verification_failed"))
        if outcome.status == "verified":
            conversations.record_event(conv, "verified", "")
            _reset_reprompts(conv)
            return Turn(_ask_next(conv, workflow, outcome.replies))
        if outcome.status == "invalid":
            return _reprompt(conv, " ".join(outcome.replies))
        return Turn(BotReply(outcome.replies))
    if conv.step == CONFIRM:
        return _confirm(conv, workflow, text)
    if conv.step == CHANGE:
        return Turn(_choose_change(conv, workflow, text))

    step = workflow.step(conv.step)
    try:
        value = step.validate(text)
    except Invalid as exc:
        # Not an answer to this step: perhaps a different issue altogether.
        switched = _switch_target(conv, workflow, text, SWITCH_AT)
        if switched is not None:
            return _switch(conv, workflow, switched)
        return _reprompt(conv, str(exc), card=step.card(), suggestions=step.suggestions())
    # Collected answers are kept (and sent to Desk) with any typed secret masked.
    conv.data = {**conv.data, step.name: redaction.redact(value) if isinstance(value, str) else value}
    _reset_reprompts(conv)
    conversations.record_event(conv, "step_answered", step.name)
    if conv.state.get("editing"):
        conv.state = {k: v for k, v in conv.state.items() if k != "editing"}
        return Turn(_confirm_prompt(conv, workflow, ["Updated."]))
    return Turn(_ask_next(conv, workflow, []))


def _ask_next(conv: Conversation, workflow: Workflow, replies: list) -> BotReply:
    for step in workflow.steps:
        if step.name not in conv.data:
            conv.step = step.name
            return BotReply(replies + [step.prompt], input=step.card(), suggestions=step.suggestions())
    return _confirm_prompt(conv, workflow, replies)


def _confirm_prompt(conv: Conversation, workflow: Workflow, replies: list) -> BotReply:
    conv.step = CONFIRM
    lines = tickets.summary_lines(conv, workflow)
    summary = "Here's what I have:\n" + "\n".join(f"• {line}" for line in lines) if lines else ""
    text = f"{summary}\n\nShall I create a {workflow.priority.lower()}-priority ticket for our engineers?".strip()
    return BotReply(replies + [text], suggestions=CONFIRM_OPTIONS)


def _confirm(conv: Conversation, workflow: Workflow, text: str):
    from .engine import Turn

    lowered = text.strip().lower()
    if lowered.startswith("change"):
        return Turn(_offer_change(conv, workflow))
    if lowered == "cancel":
        return Turn(_cancel(conv, workflow))
    try:
        yes = yes_no(text) if not lowered.startswith("yes") else True
    except Invalid:
        return _reprompt(conv, "Please choose: create the ticket, change something, or cancel.",
                         suggestions=CONFIRM_OPTIONS)
    if not yes:
        return Turn(_offer_change(conv, workflow, lead="No problem."))
    request = tickets.request_ticket(conv, workflow)
    conv.step = None
    conv.state = {**conv.state, "filed": request.ref}
    conversations.record_event(conv, "workflow_completed", workflow.intent)
    return Turn(BotReply(["Thank you! I'm logging your request with our support team now."]), ticket=request)


def _offer_change(conv: Conversation, workflow: Workflow, lead: str = "Sure.") -> BotReply:
    conv.step = CHANGE
    labels = [s.label for s in workflow.steps if s.name in conv.data]
    return BotReply([f"{lead} Which answer would you like to change?"], input=select_card(labels + ["Nothing, go on"]))


def _choose_change(conv: Conversation, workflow: Workflow, text: str) -> BotReply:
    from .validation import choice

    labels = [s.label for s in workflow.steps if s.name in conv.data]
    try:
        picked = choice(text, tuple(labels + ["Nothing, go on"]))
    except Invalid as exc:
        return BotReply([str(exc)], input=select_card(labels + ["Nothing, go on"]))
    if picked == "Nothing, go on":
        return _ask_next(conv, workflow, [])
    step = next(s for s in workflow.steps if s.label == picked)
    data = dict(conv.data)
    data.pop(step.name, None)
    conv.data = data
    conv.step = step.name
    conv.state = {**conv.state, "editing": step.name}
    return BotReply([step.prompt], input=step.card(), suggestions=step.suggestions())


def _cancel(conv: Conversation, workflow: Workflow) -> BotReply:
    conversations.record_event(conv, "workflow_cancelled", workflow.intent)
    conv.step = None
    conv.data = {}
    conv.state = {k: v for k, v in conv.state.items() if k not in ("verify", "reprompts", "editing")}
    return BotReply([f"OK, I've cancelled the {workflow.title.lower()} request. Is there anything else I can help with?"],
                    suggestions=phrases.menu())


def _answered(conv: Conversation, workflow: Workflow) -> bool:
    return any(s.name in conv.data for s in workflow.steps)


def _switch_target(conv: Conversation, workflow: Workflow, text: str, threshold: float) -> Workflow | None:
    """The workflow another issue raised mid-workflow belongs to, if the classifier is sure enough."""
    if verification.expects_secret(conv) or len(text.split()) < 3:
        return None  # never route a verification answer or a one-word reply
    result = intents.classify(text)
    if result.intent in WORKFLOWS and result.intent != workflow.intent and result.confidence >= threshold:
        return WORKFLOWS[result.intent]
    return None


def _switch(conv: Conversation, workflow: Workflow, switched: Workflow):
    conversations.record_event(conv, "workflow_switched", f"{workflow.intent} -> {switched.intent}")
    return start(conv, switched, note=f"OK, let's deal with that instead: {switched.title.lower()}.")


def _reprompt(conv: Conversation, message: str, *, card: dict | None = None, suggestions: list | None = None):
    """Ask again, at most MAX_REPROMPTS times on one step; then a person takes over."""
    from .engine import Turn, hand_over

    counts = dict(conv.state.get("reprompts") or {})
    key = conv.step or "?"
    counts[key] = counts.get(key, 0) + 1
    conv.state = {**conv.state, "reprompts": counts}
    if counts[key] > MAX_REPROMPTS:
        conversations.record_event(conv, "reprompts_exhausted", key)
        return Turn(hand_over(conv, "bot_stuck"))
    return Turn(BotReply([message], input=card, suggestions=suggestions))


def _reset_reprompts(conv: Conversation) -> None:
    if conv.state.get("reprompts"):
        conv.state = {k: v for k, v in conv.state.items() if k != "reprompts"}
