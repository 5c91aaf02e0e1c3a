import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(REPO, "pants-plugins"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

# Session fixtures that build local conda channels (tiny: synthetic, realistic: real CPython,
# converted wheels, zstd): tests/factory/fixtures.py
pytest_plugins = ["tests.factory.fixtures", "tests.packaging.wheel", "tests.e2e.plugins"]
