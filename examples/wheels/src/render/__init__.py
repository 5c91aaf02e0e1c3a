"""The example app of examples/wheels: Markdown rendered by a PyPI wheel (markdown-it-py) and text
escaped by a C extension from another wheel (MarkupSafe's _speedups)."""
