"""Local conda channel factory: every conda package the tests, examples and benchmarks use is
built here (no conda channel is reachable from our machines).

Modules (details in each docstring):

* ``condapkg``  deterministic conda package writer (.conda / .tar.bz2, info/ by hand, old-style
  packages without paths.json, low-level hooks for broken packages).
* ``tiny``      ``build(dest) -> TinyChannel`` (synthetic, ~0.15 s, every install feature,
  linux-64 + linux-aarch64 + noarch) and ``build_bad(dest) -> BadChannel`` (broken packages).
* ``realistic`` ``ensure() -> Path`` cached channel with real CPython 3.11/3.12 (pyenv,
  relocated), numpy + pyflakes from PyPI wheels, zstd, a C prefix program.
* ``fixtures``  pytest fixtures ``tiny_channel``, ``bad_channel``, ``realistic_channel`` and the
  py-rattler oracle ``rattler_solve`` / ``rattler_install`` / ``rattler_install_records``.
* ``cbuild``    gcc helpers, compiled binaries cached by source hash.

CLI: ``python -m tests.factory tiny DIR | bad DIR | realistic [--out DIR]`` prints the channel path.
Caches live under ``${XDG_CACHE_HOME:-~/.cache}/coex-test-channels/``.
"""
