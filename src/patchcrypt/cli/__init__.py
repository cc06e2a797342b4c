"""Command-line interface: ``patchcrypt <command>``.

Each command group lives in its own module under ``patchcrypt.cli`` and registers itself on
:data:`patchcrypt.cli.app.app` when imported. :func:`main` turns every user error into one line on
stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings

from ..errors import PatchcryptError
from .app import app

# Command modules, in help order. A module not present in this installation is skipped.
_COMMAND_MODULES = (
    "keys", "files", "parts", "info", "demo", "train", "evaluate", "keyed", "attack", "bench", "serve", "report",
)


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        full = f"{__name__}.{name}"
        try:
            importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name != full:
                raise
    _show_unset_defaults(app)


def _show_unset_defaults(typer_app) -> None:
    """``--help`` shows every default: an optional option left unset (None) that names no default of its own
    shows ``[default: none]`` instead of nothing."""
    import inspect

    from typer.models import OptionInfo

    apps = [typer_app]
    while apps:
        current = apps.pop()
        apps += [group.typer_instance for group in current.registered_groups if group.typer_instance]
        for command in current.registered_commands + [current.registered_callback]:
            if command is None or command.callback is None:
                continue
            for param in inspect.signature(command.callback).parameters.values():
                info = param.default
                if (isinstance(info, OptionInfo) and info.default is None and info.show_default is True
                        and not (info.help and "default" in info.help.lower())):
                    info.show_default = "none"


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Entry point of the ``patchcrypt`` console script."""
    warnings.showwarning = _warning_line
    _load_commands()
    try:
        # typer turns Ctrl-C into a return value of 130 when not in standalone mode; commands return None
        rv = app(args=argv, standalone_mode=False)
    except PatchcryptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # typer/click exits (usage errors already printed)
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # usage errors and anything unexpected: one line, no traceback
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # typer/click usage errors
            exc.show()
            return int(exc.exit_code)
        if type(exc).__name__ == "Abort":
            print("error: aborted", file=sys.stderr)
            return 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if rv == 130:
        print("error: interrupted", file=sys.stderr)
        return 130
    return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
