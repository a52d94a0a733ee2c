"""`python -m recbole_lda COMMAND [--key=value ...]`: every command of the package
(`python -m recbole_lda --help` lists them)."""

import sys

from recbole_lda.cli import main

if __name__ == "__main__":
    sys.exit(main())
