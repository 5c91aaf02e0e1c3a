"""coex.lib: the Pants-free build library.

Everything that turns an environment description into a `.coex` archive lives here, in plain
Python (py-rattler 0.25 + zstandard, the packages of the Pants venv), with no Pants import:

    records    the typed records the steps hand each other (solve request, lock header, locked
               package, entry points, assemble spec, ...), to and from JSON
    envspec    environment.yml -> EnvSpec (channels, specs, `pip:` requirements), with clear errors
    pypi       PyPI requirements, pip: options, wheel tags and markers of a conda platform, the
               conda environment's own Python distributions (pure)
    pipsolve   pip's resolver run for a locked python and platform; why no wheel fits
    platforms  conda subdirs and the virtual packages assumed when solving for them
    request    building a solve request, its inputs hash, the freshness check (pure)
    channels   how lockfiles name channels portably (`coex://buildroot/...`, `coex://NAME/...`)
               and where those are on this machine (pure)
    lockfile   solve (py-rattler) + PyPI resolve -> rattler lock file (conda and `pypi:`
               entries) with a `# coex-lockfile:` header; lock_entries(): one platform's packages
               and wheels (or the part some specs need)
    fetch      download/copy one package or wheel by URL, verifying size + sha256 (a command)
    transcode  .tar.bz2 -> deterministic .tar.zst (also a command)
    pkgfiles   read members/file lists of a conda package in any encoding
    assemble   libzstd extraction, entry point validation, coex_runtime.format.write_archive
    explicit   conda `@EXPLICIT` export

The Pants rules run these as processes (`python -m coex.lib <command> ...`, see __main__.py) and
import the pure modules (records, request, envspec's parsing, platforms); `./coex` (coex.cli)
calls the very same functions in-process. py-rattler is imported only inside the functions that
need it, which run in those processes and in `./coex`, never in the Pants process.
Every user-facing failure is a `coex.lib.errors.CoexError` whose message says what is wrong and
how to fix it.
"""
