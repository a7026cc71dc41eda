"""`pg-tuner reject ID [--reason]`: an operator rejects a proposed action."""

from __future__ import annotations

import argparse

from tuner.commands.approve import decide
from tuner.models import ActionState


def run(args: argparse.Namespace) -> int:
    return decide(args, ActionState.REJECTED, "reject")
