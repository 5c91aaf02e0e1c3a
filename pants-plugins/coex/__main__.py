"""`python -m coex` (what ./coex runs): the standalone command line, see coex/cli.py."""
import sys

from coex.cli import main

sys.exit(main())
