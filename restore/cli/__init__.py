"""The ``restore`` command line: degrade an image, restore it, compare with the truth.

Heavy libraries (torch, scikit-image) are imported inside the commands so that ``restore --help``
answers at once. Every user error is a :class:`RestoreError`: one line on stderr, exit code 2,
and no output file is left behind (outputs are checked first and written atomically).

One module per command group: ``app`` (the application and the entry point), ``common`` (shared options
and helpers), ``degrade``, ``restoration`` (inpaint, deblur, superres, denoise, cs), ``training``,
``sampling`` (sample, info, priors) and ``benchmarks`` (bench, evaluate).
"""

# Importing a command module registers its commands, in this order in `restore --help`.
from . import degrade, restoration, training, sampling, benchmarks  # noqa: I001
from .app import TASKS, app, main
from .restoration import _load_measurement

COMMAND_MODULES = (degrade, restoration, training, sampling, benchmarks)

__all__ = ["COMMAND_MODULES", "TASKS", "app", "main", "_load_measurement"]
