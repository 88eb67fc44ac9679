"""`python -m ivig_safety.cli` runs the command line."""

from .app import main

main()
