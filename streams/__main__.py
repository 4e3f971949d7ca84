"""`python -m streams` is the `vigil` command."""

from streams.cli.main import main

main()
