"""coex.lib: the Pants-free build library.

Everything that turns an environment description into a `.coex` archive lives here, in plain
Python (py-rattler 0.25 + zstandard, the packages of the Pants venv), with no Pants import:

    envspec    environment.yml -> EnvSpec (channels, specs), with clear errors
    platforms  conda subdirs and the virtual packages assumed when solving for them
    lockfile   solve (py-rattler) -> rattler lock file with a `# coex-lockfile:` header;
               inputs_sha256() (pure, for staleness), read_header(), entries()
    fetch      download/copy one package by URL, verifying size + sha256
    transcode  .tar.bz2 -> deterministic .tar.zst
    pkgfiles   read members/file lists of a conda package in any encoding
    assemble   libzstd extraction, entry point validation, coex_runtime.format.write_archive
    explicit   conda `@EXPLICIT` export

The Pants rules run these as processes (`python -m coex.lib <command> ...`, see __main__.py) and
import the pure helpers; `./coex` (coex.cli) calls the very same functions in-process.
Every user-facing failure is a `coex.lib.errors.CoexError` whose message says what is wrong and
how to fix it.
"""
