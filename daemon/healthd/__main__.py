"""`python -m healthd` is `healthd`."""

from healthd.cli import main

main()
