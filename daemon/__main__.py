"""`python -m daemon` is `healthd`."""

from daemon.cli import main

main()
