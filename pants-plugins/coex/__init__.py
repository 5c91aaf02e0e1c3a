"""coex: a Pants backend that turns a locked conda environment plus in-repo sources into one
self-extracting executable (`coex_binary`)."""

# The one place the version lives (pyproject.toml reads it; so does `coex --version`).
__version__ = "0.2.0"
