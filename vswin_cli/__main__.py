"""`python -m vswin_cli` is the same as `vswin`."""

from .cli import main

if __name__ == "__main__":  # not when a spawned decoder process re-imports the main module
    main()
