"""``patchcrypt --version``, and ``--help`` showing a default for every option of every command."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from patchcrypt import __version__
from patchcrypt.cli import _load_commands
from patchcrypt.cli.app import app

from cli_helpers import run


def _commands():
    _load_commands()
    stack = [("patchcrypt", typer.main.get_command(app))]
    while stack:
        name, cmd = stack.pop()
        if hasattr(cmd, "commands"):
            stack += [(f"{name} {n}", sub) for n, sub in cmd.commands.items()]
        else:
            yield name, cmd


def test_version(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"patchcrypt {__version__}" and not err


def test_every_option_shows_its_default():
    missing = []
    for name, cmd in _commands():
        for p in cmd.params:
            if type(p).__name__ != "TyperOption" or p.required or p.is_flag:
                continue
            if p.default is None and not isinstance(p.show_default, str) and "default" not in (p.help or "").lower():
                missing.append(f"{name} {p.opts[0]}")
    assert not missing, missing


def test_train_help_defaults_are_the_config_defaults():
    from patchcrypt.train import TrainConfig

    train = dict(_commands())["patchcrypt train"]
    shown = {p.name: p.show_default for p in train.params if isinstance(p.show_default, str)}
    for f in dataclasses.fields(TrainConfig):
        if f.name in shown and isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool) \
                and f.default != "":
            assert shown[f.name] == str(f.default), (f.name, shown[f.name], f.default)
    assert shown["val_split"] == "auto" and shown["epochs"] == "10"


@pytest.mark.parametrize("command,shown", [("train", "--val-split"), ("evaluate", "validation/")])
def test_help_prints_defaults_and_the_splits(capsys, command, shown):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "default" in out and shown in out
