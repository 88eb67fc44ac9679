"""`python -m ivig_safety` runs the command line."""

from .cli import main

main()
