"""`python -m coex` (what ./coex runs): the standalone command line, see coex/entry.py (a warm
`coex run`) and coex/cli.py (everything else)."""
from coex.entry import main

main()
