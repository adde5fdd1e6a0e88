"""The list of subcommands. Each module under ``emoadapt.cli`` exposes ``register(subparsers)``,
which adds its parser and sets ``run`` to a function ``args -> exit status``."""

from __future__ import annotations

from . import (adapt_cmd, data_cmd, demo_cmd, embed_cmd, evaluate_cmd, explain_cmd, export_cmd, models_cmd,
               predict_cmd, serve_cmd, train_fer_cmd)

REGISTERED = [demo_cmd.register, predict_cmd.register, explain_cmd.register, export_cmd.register,
              data_cmd.register, train_fer_cmd.register, adapt_cmd.register, evaluate_cmd.register,
              embed_cmd.register, serve_cmd.register, models_cmd.register]
from . import report_cmd  # noqa: E402
REGISTERED.append(report_cmd.register)
