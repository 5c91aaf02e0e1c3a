"""coex_runtime: the code inside every .coex archive. Standard library only, CPython 3.6+."""
