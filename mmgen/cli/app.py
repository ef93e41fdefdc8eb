"""The typer app every command registers on, its consoles, and how errors are reported.

Progress goes to stderr, results to stdout. A library error becomes one red line on stderr and
exit code 1; MMGEN_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys

import typer
from rich.console import Console
from rich.text import Text

from mmgen.errors import MmgenError
from mmgen.plugin.discovery import mmgen_version
from mmgen.plugin.moved import explain as explain_moved

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="mmgen: train, sample and inspect multimodal generative models (MVAE) built from plugins.",
)
out_console = Console()
err_console = Console(stderr=True)


def reports_errors(command):
    """Library errors become one line on stderr and exit 1, also under typer's CliRunner."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MmgenError as exc:
            if _debug():
                raise
            if _rank() > 0 or exc.quiet:  # under torchrun mmgen's errors are alike on every rank: rank 0 says it
                raise typer.Exit(exc.exit_code)
            _fail(f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else ""), exc.exit_code)
        except KeyboardInterrupt:  # outside training (which stops on its own with a checkpoint)
            _fail("interrupted; nothing was written", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug, not bad input: still one line unless debugging
            if _debug():
                raise
            where = f"rank {_rank()}: " if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
            moved = explain_moved(exc, mmgen_version())  # code (a plugin's) that imports a name that moved
            if moved:
                _fail(f"{where}{exc.__class__.__name__}: {moved} (docs/plugin-hooks.md, API changes)")
            _fail(f"{where}internal error: {exc.__class__.__name__}: {' '.join(str(exc).split())[:500]} "
                  "(set MMGEN_DEBUG=1 for the traceback)")

    return wrapper


def _rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def _debug() -> bool:
    return os.environ.get("MMGEN_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message.replace("\n", " ")), soft_wrap=True)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(Text.assemble(("error: ", "bold red"), "interrupted"))
        sys.exit(130)
