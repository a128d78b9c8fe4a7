"""``python -m restore.cli``: the same as the ``restore`` command."""

from . import main

main()
