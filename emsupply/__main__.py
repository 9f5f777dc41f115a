"""`python -m emsupply`: the same as the `emsupply` command."""

from emsupply.cli import main

main()
