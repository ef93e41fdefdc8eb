"""The typer apps every command registers on, how their commands load, the consoles, and how errors
are reported.

Progress goes to stderr, results to stdout. A library error becomes one red line on stderr and
exit code 1; MMGEN_DEBUG=1 shows the traceback instead. The command modules import the library,
and with it torch, which takes seconds; so a group imports a command's module only when that
command runs or shows its help (``LazyGroup``), and ``mmgen --help`` lists them from a table.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.core
import typer.main
from rich.console import Console
from rich.text import Text

from mmgen.errors import MmgenError
from mmgen.plugin.discovery import mmgen_version
from mmgen.plugin.moved import explain as explain_moved


@dataclass(frozen=True)
class Lazy:
    """A command as its group lists it before importing it: the module whose import registers it, and
    its line in the group's ``--help`` (its docstring's first paragraph; tests/cli/test_help.py checks)."""

    module: str
    help: str


class LazyGroup(typer.core.TyperGroup):
    """A group that imports a command's module when the command is run or asked for its help, and
    lists the commands not imported yet from ``lazy``. An unknown command is one error line that
    names the nearest command."""

    source: ClassVar[typer.Typer]  # the Typer the command modules register on
    lazy: ClassVar[dict[str, Lazy]]

    def __init__(self, **settings) -> None:
        super().__init__(**settings)
        self.listing = False

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*self.lazy, *(name for name in self.commands if name not in self.lazy)]

    def get_command(self, ctx: typer.Context, name: str) -> Any:
        if name not in self.commands and name in self.lazy:
            if self.listing:  # the group's help: the table's line, nothing imported
                return typer.core.TyperCommand(name, help=self.lazy[name].help)
            self.load(name)
        return self.commands.get(name)

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False

    def resolve_command(self, ctx: typer.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and not ctx.resilient_parsing and self.get_command(ctx, name) is None:
            where = "".join(f"{c.info_name} " for c in _chain(ctx)[1:])  # "recipes " inside `mmgen recipes`
            near = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            _fail(f"unknown command '{where}{name}'; " + (f"did you mean '{where}{near[0]}'?" if near else
                  "the commands are " + ", ".join(self.list_commands(ctx))), 2)
        return super().resolve_command(ctx, args)

    def load(self, name: str) -> None:
        """Import the command's module (it registers the command on ``source``) and build it."""
        importlib.import_module(self.lazy[name].module)
        for info in self.source.registered_commands:
            if (info.name or typer.main.get_command_name(info.callback.__name__)) == name:
                self.commands[name] = typer.main.get_command_from_info(
                    info, pretty_exceptions_short=self.source.pretty_exceptions_short,
                    rich_markup_mode=self.source.rich_markup_mode)


def _chain(ctx: typer.Context) -> list[typer.Context]:
    """The contexts from the outermost (the program) to ``ctx``."""
    return [*_chain(ctx.parent), ctx] if ctx.parent is not None else [ctx]


def lazy_typer(**settings) -> typer.Typer:
    """A Typer whose group is a LazyGroup with an empty table; ``declare`` fills it."""
    group = type("LazyGroup", (LazyGroup,), {"lazy": {}})
    instance = typer.Typer(cls=group, **settings)
    group.source = instance
    return instance


def declare(instance: typer.Typer, commands: dict[str, Lazy]) -> None:
    """Name the commands ``instance`` lists before their modules are imported, in the order listed."""
    instance.info.cls.lazy.update(commands)


def _flags_take_no_type(display_type_rich):
    @functools.wraps(display_type_rich)
    def shown(self, ctx):
        return None if self.is_flag else display_type_rich(self, ctx)

    shown.flags_take_no_type = True
    return shown


# typer's rich help gives every option a type, flags too (`--resume <bool>`); a flag takes no value.
if not getattr(typer.core.TyperOption.display_type_rich, "flags_take_no_type", False):
    typer.core.TyperOption.display_type_rich = _flags_take_no_type(typer.core.TyperOption.display_type_rich)

APP_EPILOG = """Start with: mmgen recipes ls, then mmgen train NAME. Each command's -h shows its options and examples.

Environment: MMGEN_DATA_ROOT is the data folder of a recipe that sets no data.root (data sets are downloaded \
there when missing; default ~/.cache/mmgen/data). MMGEN_CACHE holds the judge classifiers of mmgen eval and the \
plugin list (default ~/.cache/mmgen). MMGEN_PLUGINS and MMGEN_PLUGINS_BLOCK choose the plugins that load \
(mmgen plugins -h). MMGEN_DEBUG=1 shows a traceback instead of a one-line error.
"""

app = lazy_typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="mmgen: train, sample and inspect multimodal generative models (MVAE) built from plugins.",
    epilog=APP_EPILOG,
)
recipes_app = lazy_typer(
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="List the recipes plugins ship, copy one to edit, validate a recipe without training.",
)
out_console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        out_console.print(f"mmgen {mmgen_version()}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print mmgen's version and exit."),
) -> None:
    """The options before the command."""


def reports_errors(command):
    """Library errors become one line on stderr and exit 1, also under typer's CliRunner."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except MmgenError as exc:
            if _debug():
                raise
            # under torchrun mmgen's errors are alike on every rank: rank 0 says it
            if (_rank() > 0 and not exc.every_rank) or exc.quiet:
                raise typer.Exit(exc.exit_code)
            _fail(f"{exc}" + (f" (hint: {exc.hint})" if exc.hint else ""), exc.exit_code)
        except KeyboardInterrupt:  # outside training (which stops on its own with a checkpoint)
            _fail("interrupted; nothing was written", 130)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # a bug, not bad input: still one line unless debugging
            if _debug():
                raise
            where = f"rank {_rank()}: " if _env_int("WORLD_SIZE", 1) > 1 else ""
            moved = explain_moved(exc, mmgen_version())  # code (a plugin's) that imports a name that moved
            if moved:
                _fail(f"{where}{exc.__class__.__name__}: {moved} (docs/plugin-hooks.md, API changes)")
            _fail(f"{where}internal error: {exc.__class__.__name__}: {' '.join(str(exc).split())[:500]} "
                  "(set MMGEN_DEBUG=1 for the traceback)")

    return wrapper


def _rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    return _env_int("RANK", 0)


def _env_int(name: str, default: int) -> int:
    """An integer environment variable, ``default`` when unset or not a number: the error handler must not
    fail on it (training checks these variables itself, with a line that names them)."""
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _debug() -> bool:
    return os.environ.get("MMGEN_DEBUG", "") not in ("", "0")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(Text.assemble(("error: ", "bold red"), message.replace("\n", " ")), soft_wrap=True)
    raise typer.Exit(code)


app.add_typer(recipes_app, name="recipes")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(Text.assemble(("error: ", "bold red"), "interrupted"))
        sys.exit(130)
