"""``python -m videonet`` is the ``videonet`` command."""

from videonet.cli import main

main()
