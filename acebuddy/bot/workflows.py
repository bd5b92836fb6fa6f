"""The thirteen support workflows, declared as data: title, priority, whether identity is verified,
the questions a support engineer needs answered, and the ticket they end in.

Identity verification (docs/workflows.md) is required where a ticket changes who can get in:
password reset, account unlock and user management.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable

from . import validation as v
from ..salesiq.responses import email_card, select_card, tel_card

VERIFY = "verify"  # the identity-verification ladder, run as one step (bot/verification.py)


@dataclass(frozen=True)
class Step:
    name: str
    prompt: str
    label: str  # how the answer is named in the summary and the ticket
    kind: str = "text"  # text | choice | yesno | email | phone | number
    options: tuple[str, ...] = ()
    parse: Callable[[str], object] | None = None
    help: str = ""  # shown with the re-prompt

    def card(self) -> dict | None:
        if self.kind == "choice":
            return select_card(list(self.options))
        if self.kind == "email":
            return email_card()
        if self.kind == "phone":
            return tel_card()
        return None

    def suggestions(self) -> list[str] | None:
        return ["Yes", "No"] if self.kind == "yesno" else None

    def validate(self, answer: str):
        if self.parse is not None:
            return self.parse(answer)
        if self.kind == "choice":
            return v.choice(answer, self.options)
        if self.kind == "yesno":
            return v.yes_no(answer)
        if self.kind == "email":
            return v.email(answer)
        if self.kind == "phone":
            return v.phone(answer)
        return v.text(answer)


@dataclass(frozen=True)
class Workflow:
    intent: str
    title: str
    priority: str
    steps: tuple[Step, ...]
    verify: bool = False
    intro: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def step_names(self) -> list[str]:
        names = [VERIFY] if self.verify else []
        return names + [s.name for s in self.steps]

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def _text(name, prompt, label, **kw) -> Step:
    return Step(name=name, prompt=prompt, label=label, **kw)


def _choice(name, prompt, label, options) -> Step:
    return Step(name=name, prompt=prompt, label=label, kind="choice", options=tuple(options))


def _yesno(name, prompt, label) -> Step:
    return Step(name=name, prompt=prompt, label=label, kind="yesno")


SYSTEMS = ("Remote desktop / Windows sign-in", "E-mail", "Client portal", "QuickBooks", "Not sure")
DEVICES = ("Windows PC", "Mac", "iPad or iPhone", "Android", "Thin client")
SCOPE = ("Just me", "Some users", "Everyone")


WORKFLOWS: dict[str, Workflow] = {
    wf.intent: wf
    for wf in (
        Workflow(
            "password_reset", "Password Reset", "Medium", verify=True, tags=("password",),
            intro="I can help you reset your password.",
            steps=(
                # The engineer sends a one-time reset link to the e-mail on file (never a password).
                _choice("system", "Which password do you need reset?", "System", SYSTEMS),
            ),
        ),
        Workflow(
            "account_locked", "Account Locked", "High", verify=True, tags=("lockout",),
            intro="Sorry you're locked out. Let's get you back in.",
            steps=(
                _choice("system", "Which account is locked?", "System", SYSTEMS),
                _text("message", "What message do you see when you try to sign in? Copy it exactly if you can.",
                      "Message shown"),
            ),
        ),
        Workflow(
            "server_reboot", "Server Reboot", "High", tags=("server", "reboot"),
            intro="I'll arrange a server reboot with our engineers.",
            steps=(
                _text("server", "Which server should we reboot? The name is at the top of your remote desktop "
                      "window (for example ACME-RDS01); say \"not sure\" if you don't know.", "Server"),
                _text("reason", "What is happening that needs a reboot?", "Reason"),
                _yesno("users_off", "A reboot disconnects everyone on that server. Have all users saved their "
                       "work and signed out?", "Everyone signed out"),
                _choice("when", "When should we reboot it?", "When",
                        ("Right now", "Tonight after hours", "At a time I'll give the engineer")),
            ),
        ),
        Workflow(
            "server_slowness", "Server Slowness", "High", tags=("server", "performance"),
            intro="Let's look into the slowness.",
            steps=(
                _text("server", "Which server are you on? The name is at the top of your remote desktop window "
                      "(say \"not sure\" if you don't know).", "Server"),
                _choice("scope", "Who is affected?", "Affected", SCOPE),
                _text("apps", "What is slow: everything, or one application (for example QuickBooks or Outlook)?",
                      "Slow applications"),
                _text("since", "Since when has it been slow?", "Since"),
            ),
        ),
        Workflow(
            "rdp_connection", "RDP Connection", "High", tags=("rdp", "remote-desktop"),
            intro="Let's get your remote desktop connection working.",
            steps=(
                _text("error", "What exactly does the error say? Please copy the text or the error code "
                      "(for example 0x204).", "Error"),
                _choice("device", "What are you connecting from?", "Device", DEVICES),
                _choice("scope", "Is anyone else at your company having the same problem?", "Affected", SCOPE),
                _yesno("worked_before", "Did it work for you before today?", "Worked before"),
            ),
        ),
        Workflow(
            "email_issue", "Email Issue", "Medium", tags=("email",),
            intro="Let's sort out your e-mail.",
            steps=(
                Step("mailbox", "Which mailbox has the problem? Please enter its e-mail address.", "Mailbox",
                     kind="email"),
                _choice("symptom", "What's going wrong?", "Symptom",
                        ("Can't send", "Not receiving", "Keeps asking for my password", "Outlook won't open",
                         "Phone or tablet mail", "Something else")),
                _text("error", "Any error message or bounce text? Copy it if you can, or say \"none\".", "Error",
                      parse=partial(v.text, min_len=1)),
            ),
        ),
        Workflow(
            "quickbooks_issue", "QuickBooks Issue", "Medium", tags=("quickbooks",),
            intro="Let's look at QuickBooks.",
            steps=(
                _choice("edition", "Which QuickBooks do you use?", "Edition",
                        ("Pro or Premier", "Enterprise", "Accountant", "Not sure")),
                _text("error", "What is the exact error code or message (for example H202 or 6123, 0)?", "Error"),
                _text("company_file", "Which company file are you opening?", "Company file"),
                _choice("scope", "Who is affected?", "Affected", SCOPE),
            ),
        ),
        Workflow(
            "quickbooks_mfa", "QuickBooks MFA", "Medium", tags=("quickbooks", "mfa"),
            intro="I can help with QuickBooks sign-in verification.",
            steps=(
                _choice("problem", "What's the problem with the verification code?", "Problem",
                        ("The code never arrives", "New or lost phone", "The code is rejected", "Set up MFA")),
                Step("intuit_email", "Which e-mail address do you sign in to Intuit with?", "Intuit sign-in",
                     kind="email"),
            ),
        ),
        Workflow(
            "printer_issue", "Printer Issue", "Medium", tags=("printer",),
            intro="Let's get you printing.",
            steps=(
                _text("model", "What printer is it (make and model, for example HP LaserJet M404)?", "Printer"),
                _choice("connection", "How is the printer connected?", "Connection",
                        ("USB to my computer", "Network / Wi-Fi", "Not sure")),
                _choice("symptom", "What happens?", "Symptom",
                        ("Printer missing in my session", "Jobs stuck in the queue", "Prints blank or garbled",
                         "Something else")),
                _choice("device", "What computer do you print from?", "Device", DEVICES),
            ),
        ),
        Workflow(
            "windows_update", "Windows Update", "Medium", tags=("windows-update",),
            intro="I'll pass this to the engineers who manage updates.",
            steps=(
                _text("server", "Which server or desktop is it about? (say \"not sure\" if you don't know)", "Server"),
                _choice("request", "What do you need?", "Request",
                        ("Update stuck or failed", "Postpone a restart", "Change the update schedule",
                         "Question about an update")),
                _text("details", "Tell me a little more (error shown, preferred time, ...).", "Details"),
            ),
        ),
        Workflow(
            "disk_upgrade", "Disk Upgrade", "Low", tags=("disk",),
            intro="I can request more disk space for you.",
            steps=(
                _text("server", "Which server or drive needs more space?", "Server / drive"),
                Step("amount_gb", "How much extra space do you need? (for example 50 GB or 1 TB)", "Extra space (GB)",
                     kind="number", parse=v.gigabytes),
                _choice("urgency", "How urgent is it?", "Urgency",
                        ("The disk is full now", "Running low", "Planning ahead")),
                _yesno("approved", "Extra space changes your monthly bill. Are you authorised to approve it?",
                       "Approver confirmed"),
            ),
        ),
        Workflow(
            "monitor_setup", "Monitor Setup", "Low", tags=("display",),
            intro="Let's set up your screens.",
            steps=(
                Step("monitors", "How many monitors do you want to use in your session?", "Monitors",
                     kind="number", parse=partial(v.integer, low=1, high=8)),
                _choice("device", "What computer are they connected to?", "Device", DEVICES),
                _choice("problem", "What would you like to fix?", "Request",
                        ("Use all my monitors", "Resolution or scaling", "Opens on the wrong screen",
                         "Something else")),
            ),
        ),
        Workflow(
            "user_management", "User Management", "Low", verify=True, tags=("users",),
            intro="I can pass a user change to our team.",
            steps=(
                _choice("action", "What would you like to do?", "Action",
                        ("Add a new user", "Remove a user", "Change access or permissions")),
                _text("user_name", "What is the person's full name?", "User"),
                Step("user_email", "What is their e-mail address?", "User e-mail", kind="email"),
                _text("access", "Which applications or folders should they have (or lose)? Say \"same as\" "
                      "someone if that's easier.", "Access"),
                _text("effective", "From when should the change apply?", "Effective"),
                _text("approver", "Who approves this change (name and e-mail)?", "Approver"),
            ),
        ),
    )
}


def get(intent: str | None) -> Workflow | None:
    return WORKFLOWS.get(intent or "")
