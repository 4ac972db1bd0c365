"""`python -m vswin_cli` is the same as `vswin`."""

from .cli import main

main()
