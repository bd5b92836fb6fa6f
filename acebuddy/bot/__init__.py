"""The bot: intent routing, workflows, identity verification, knowledge answers and redaction."""
from .. import speedups

speedups.use(__name__, __path__)  # before any submodule is imported

