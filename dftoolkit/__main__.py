"""``python -m dftoolkit``: the same as the ``dftoolkit`` command."""

from dftoolkit.cli import main

main()
