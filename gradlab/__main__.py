"""`python -m gradlab ...`: the same command line as `gradlab ...`."""

from .cli import main

main()
