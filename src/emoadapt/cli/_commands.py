"""The list of subcommands. Each module under ``emoadapt.cli`` has ``NAME``, a one-line ``HELP`` and
``register(subparsers)``, which adds its parser with every option and sets ``run`` to a function
``args -> exit status``. The modules import nothing heavy at module level."""

from __future__ import annotations

from . import (adapt_cmd, calibrate_cmd, data_cmd, demo_cmd, embed_cmd, evaluate_cmd, explain_cmd, export_cmd,
               merge_cmd, models_cmd, predict_cmd, quantize_cmd, report_cmd, serve_cmd, train_cmd, train_fer_cmd)

COMMANDS = [demo_cmd, predict_cmd, merge_cmd, explain_cmd, export_cmd, data_cmd, train_cmd, train_fer_cmd, adapt_cmd, evaluate_cmd,
            embed_cmd, report_cmd, serve_cmd, models_cmd, calibrate_cmd, quantize_cmd]
REGISTERED = [module.register for module in COMMANDS]
