"""The CLI's help and argument errors are instant (no torch import), and every option explains itself."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import fields

import pytest

from emoadapt.adapt.config import AdaptConfig
from emoadapt.cli import build_parser
from emoadapt.training.config import TrainConfig

PROBE = ("import sys\nfrom emoadapt.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
         "print('TORCH' if {'torch', 'numpy'} & set(sys.modules) else 'NO-TORCH')")


def _run(*argv: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60)
    return done, time.perf_counter() - started


@pytest.mark.parametrize("argv", [["--help"], ["adapt", "--help"], ["train-fer", "--help"], ["models", "--help"],
                                  ["data", "--help"], ["evaluate", "--help"], ["adapt", "--no-such-flag"],
                                  ["adapt", "--target", "x", "--out", "y", "--discrepancy", "mmmd"], ["nope"]])
def test_help_and_argument_errors_do_not_import_torch(argv):
    """Not even numpy: building the parser reads only the command modules and the torch-free configs."""
    done, seconds = _run(*argv)
    assert done.stdout.strip().endswith("NO-TORCH"), (argv, done.stdout[-300:], done.stderr[-300:])
    assert seconds < 10  # ~0.1 s on an idle machine; the bound only catches a torch import under load


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _options_without_help(parser: argparse.ArgumentParser, path: str = "") -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}".strip())
        elif not isinstance(action, argparse._HelpAction) and not action.help:
            missing.append(f"{path}: {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_of_every_command_has_help():
    assert _options_without_help(build_parser()) == []


def test_adapt_offers_every_config_field_with_its_default_and_help():
    adapt = _subparser(build_parser(), "adapt")
    by_dest = {a.dest: a for a in adapt._actions}
    defaults = AdaptConfig()
    for f in fields(AdaptConfig):
        action = by_dest[f.name]
        assert action.default == getattr(defaults, f.name) and f.metadata["help"] in action.help, f.name
    help_text = adapt.format_help()
    assert "--ema" in help_text and "moving average" in help_text and "--kd-weight" not in help_text


def test_train_fer_defaults_are_the_train_config_defaults():
    train = _subparser(build_parser(), "train-fer")
    by_dest = {a.dest: a for a in train._actions}
    for f in fields(TrainConfig):
        if f.name in by_dest:
            assert by_dest[f.name].default == getattr(TrainConfig(), f.name), f.name


def test_one_command_parser_has_the_others_by_name():
    parser = build_parser(only="models")
    assert set(_subparser(parser, "adapt")._option_string_actions) == {"-h", "--help"}
    assert parser.parse_args(["models"]).command == "models"


@pytest.mark.parametrize("option", [["--views", "0"], ["--freeze", "b9", "--init", "imagenet-mobilenetv2"],
                                    ["--head", "mapped"], ["--epochs", "0"]])
def test_wrong_adapt_options_are_one_line_errors(option, tmp_path, capsys):
    from emoadapt.cli import main

    status = main(["adapt", "--target", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress", *option])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("emoadapt adapt: error:") and "\n" not in err, err
    assert option[0].lstrip("-").split("-")[0] in err  # the message names the option, not the empty folder


def test_the_adaptation_package_raises_user_errors_as_emoadapt_errors():
    """Every error the adapt package raises for a user's input reaches the CLI's one-line handler."""
    import ast
    from pathlib import Path

    import emoadapt.adapt

    plain = []
    for path in sorted(Path(emoadapt.adapt.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    getattr(node.exc.func, "id", "") in ("ValueError", "TypeError", "RuntimeError"):
                plain.append(f"{path.name}:{node.lineno}")
    assert plain == []
