"""The typer application, its root options (--threads), and the console entry point."""

from __future__ import annotations

import re
import sys
from typing import Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError, RestoreWarning


app = typer.Typer(
    help="Image restoration with generative priors: degrade an image, then recover it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TASKS = ("inpaint", "deblur", "superres", "denoise", "cs")


@app.callback()
def _root(threads: Annotated[Optional[int], typer.Option(
        "--threads", envvar="RESTORE_THREADS", min=1,
        help="CPU threads for torch (default: all cores, waiting passively, so a busy machine does not "
             "slow them down; see README).")] = None):
    """Image restoration with generative priors: degrade an image, then recover it."""
    import os

    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch is first imported
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _notes_as_one_line() -> None:
    """Show a RestoreWarning as one line on stderr ("note: ..."), without Python's source location; other
    warnings as before."""
    import warnings

    if getattr(warnings.showwarning, "restore_notes", False):
        return
    shown = warnings.showwarning

    def note(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RestoreWarning):
            print(f"note: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    note.restore_notes = True
    warnings.showwarning = note


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    import os

    from ..runtime import keep_freed_memory

    # OpenMP threads that finish early wait passively instead of spinning: on a machine where another
    # job holds a core, spinning threads made every command 1.3-2.5x slower than one thread, and
    # passive ones cost nothing (README, "Threads"). Set before torch (and OpenMP) is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()
    import signal

    def terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files and partial outputs go
        raise SystemExit(128 + signum)

    import threading

    if threading.current_thread() is threading.main_thread():  # handlers can only be installed there
        signal.signal(signal.SIGTERM, terminated)
    _notes_as_one_line()
    try:
        # standalone_mode=False: usage errors come here as exceptions instead of a framed message box.
        code = app(prog_name="restore", standalone_mode=False)
    except RestoreError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: what was being written has been removed on the way out
        _fail("interrupted", 130)
    except Exception as exc:
        # click's exceptions (typer vendors click in some versions, so they are matched by name): a
        # mistyped option, a missing argument, a value of the wrong type; Abort is Ctrl-C at a prompt.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:  # `restore` alone: the help has been shown
            sys.exit(2)
        if "ClickException" in kinds:
            ctx = getattr(exc, "ctx", None)
            _fail(f"{exc.format_message()} (see '{ctx.command_path if ctx else 'restore'} --help')",
                  getattr(exc, "exit_code", 2))
        if "Abort" in kinds:
            _fail("interrupted", 130)
        text = str(exc)  # torch's allocators report a failed allocation as a RuntimeError
        if not (isinstance(exc, MemoryError) or isinstance(exc, RuntimeError) and (
                "can't allocate memory" in text or "out of memory" in text.lower())):
            raise
        wanted = re.search(r"allocate ([0-9.]+ ?[KMGT]?i?B|[0-9]+ bytes)", text)
        _fail(f"out of memory{f' (an allocation of {wanted.group(1)} failed)' if wanted else ''}: "
              "use a smaller image, fewer --samples or a smaller --batch-size")
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int = 2) -> None:
    """The one line of a failed command on stderr, exit code ``code``; with --json, also the error as a
    JSON object on stdout, where a script reads the result."""
    import json

    typer.echo(f"error: {message}", err=True)
    if "--json" in sys.argv[1:]:
        typer.echo(json.dumps({"error": message, "code": code}))
    sys.exit(code)
