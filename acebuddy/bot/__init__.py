"""The bot: intent routing, workflows, identity verification, knowledge answers and redaction."""
