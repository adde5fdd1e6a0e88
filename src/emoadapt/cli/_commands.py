"""The list of subcommands. Each module under ``emoadapt.cli`` exposes ``register(subparsers)``,
which adds its parser and sets ``run`` to a function ``args -> exit status``."""

from __future__ import annotations

from . import evaluate_cmd, train_fer_cmd
from . import data_cmd
from . import explain_cmd

REGISTERED = [train_fer_cmd.register, evaluate_cmd.register, explain_cmd.register, data_cmd.register]
