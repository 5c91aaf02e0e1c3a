"""`python -m coex` (what ./coex runs): the standalone command line, see coex/cli.py."""
from coex.cli import main
from coex.lib.errors import exit_process

exit_process(main())
