"""`python -m streams` is the `vigil` command."""

from streams.cli import main

main()
