"""`python -m hypotune.cli`: the `hypotune` command without its entry-point script."""

import sys

from hypotune.cli.parser import main

if __name__ == "__main__":  # a worker process imports this module again; it must not run
    sys.exit(main())
