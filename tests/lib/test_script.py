"""coex.lib.script: script headers in both formats, their errors (with line numbers), and the
program that runs a script."""
import pytest

from coex.lib.errors import CoexError
from coex.lib.script import (
    CONDA_EXECUTE,
    PEP723,
    check_header_specs,
    parse_script,
    script_command,
)

PEP723_SCRIPT = """\
#!/usr/bin/env python3
# Prints numbers.
# /// conda
# dependencies = [
#   "python >=3.11",
#   "numpy",
# ]
# channels = ["conda-forge", "./channel"]
# platforms = ["linux-64", "osx-arm64"]
# ///
import numpy
"""

EXECUTE_SCRIPT = """\
#!/usr/bin/env python
\"\"\"A docstring.\"\"\"

# conda execute
# env:
#  - python >=3
#  - numpy   >=1.26
# channels:
#  - conda-forge
# run_with: python -u

import numpy
"""


def test_pep723_block():
    h = parse_script(PEP723_SCRIPT, "s.py")
    assert h.format == PEP723 and h.line == 3
    assert h.specs == ("python >=3.11", "numpy")
    assert h.spec_lines == (5, 6)
    assert h.channels == ("conda-forge", "./channel")
    assert h.platforms == ("linux-64", "osx-arm64")
    assert h.run_with is None
    assert h.shebang == ("/usr/bin/env", "python3")
    assert h.pypi == ()


def test_pypi_dependencies_of_a_pep723_block():
    h = parse_script('# /// conda\n# dependencies = ["python 3.11.*"]\n'
                     '# pypi-dependencies = ["Markdown_It.py >=3", "mdurl", "mdurl"]\n# ///\n',
                     "s.py")
    assert h.specs == ("python 3.11.*",)
    assert h.pypi == ("markdown-it-py>=3", "mdurl")  # canonical, deduplicated


def test_conda_execute_header():
    h = parse_script(EXECUTE_SCRIPT, "s.py")
    assert h.format == CONDA_EXECUTE and h.line == 4
    assert h.specs == ("python >=3", "numpy >=1.26")  # (whitespace normalized)
    assert h.spec_lines == (6, 7)
    assert h.channels == ("conda-forge",)
    assert h.platforms is None
    assert h.run_with == ("python", "-u")


def test_conda_execute_header_without_indentation():
    h = parse_script("# conda execute\n#env:\n#- tinypy\n#channels: [x]\nprint()\n", "s.py")
    assert h.specs == ("tinypy",) and h.channels == ("x",)


def test_no_header():
    assert parse_script("#!/bin/sh\necho hi\n", "s.sh") is None
    # another tool's `# /// x` comment, closed or not, is no header
    assert parse_script("# /// other\n# a = 1\n# ///\n# /// unclosed\nprint()\n", "s.py") is None


@pytest.mark.parametrize("text, line, words", [
    # TOML syntax error: the line inside the block
    ("x = 1\n# /// conda\n# dependencies = [python]\n# channels = []\n# ///\n", 3,
     "not valid TOML"),
    ("# /// conda\n# dependencies = [\"python\"]\n# pypi-dependencies = [\"req uests\"]\n"
     "# ///\n", 3, "invalid PyPI requirement 'req uests'"),
    ("# /// conda\n# dependencies = [\"python\"]\n# pypi-dependencies = \"requests\"\n# ///\n",
     3, "`pypi-dependencies` must be a list"),
    ("# /// conda\n# dependencies = [\"python\"]\n# pypi-dependencies = [\"-e .\"]\n# ///\n",
     3, "an editable install"),
    ("# /// conda\n# channels = [\"x\"]\n# depends = [\"python\"]\n# ///\n", 3,
     "unknown key `depends`"),
    ("# /// conda\n# channels = [\"x\"]\n# ///\n", 1, "no dependencies"),
    ("# /// conda\n# dependencies = \"python\"\n# ///\n", 2, "must be a list"),
    ("# /// conda\n# dependencies = [\"python\"]\n# platforms = [1]\n# ///\n", 3,
     "`platforms` must be a list"),
    ("\n# /// conda\n# dependencies = [\"python\"]\nimport x\n", 2, "is not closed"),
    ("# /// script\n# requires-python = \">=3.11\"\n# dependencies = [\"requests\"]\n# ///\n", 3,
     "`pypi-dependencies` take PyPI requirements"),
    ("# conda execute\n# env:\n#  - python\n#   - numpy: [\n", 4, "not valid YAML"),
    ("# conda execute\n# env:\n#  - python\n# channel: [x]\n", 4, "unknown key `channel`"),
    ("# conda execute\n# channels: [x]\n", 1, "no `env:`"),
    ("# conda execute\n# env:\n#  - python\n# run_with: [python]\n", 4, "`run_with` must be"),
])
def test_bad_header_names_the_line(text, line, words):
    with pytest.raises(CoexError) as e:
        parse_script(text, "bad.py")
    assert str(e.value).startswith("bad.py:{}: ".format(line)), str(e.value)
    assert words in str(e.value)


def test_two_headers_are_an_error():
    with pytest.raises(CoexError, match=r"both a `# conda execute` header \(line 5\) and a "
                                        r"`# /// conda` block \(line 1\)"):
        parse_script("# /// conda\n# dependencies = [\"a\"]\n# ///\n\n# conda execute\n"
                     "# env: [b]\n", "s.py")
    with pytest.raises(CoexError, match=r"two `# /// conda` blocks \(lines 1 and 4\)"):
        parse_script("# /// conda\n# dependencies = [\"a\"]\n# ///\n# /// conda\n"
                     "# dependencies = [\"b\"]\n# ///\n", "s.py")


def test_a_script_block_without_dependencies_is_fine():
    h = parse_script("# /// script\n# requires-python = \">=3.11\"\n# ///\n# /// conda\n"
                     "# dependencies = [\"python\"]\n# ///\n", "s.py")
    assert h.specs == ("python",)


def test_bad_spec_names_its_line():
    h = parse_script(EXECUTE_SCRIPT.replace("numpy   >=1.26", "numpy >=>=1"), "s.py")
    with pytest.raises(CoexError, match=r"^s\.py:7: invalid conda match spec 'numpy >=>=1'"):
        check_header_specs(h)


def _header(text, name="s.py"):
    return parse_script(text + "# /// conda\n# dependencies = [\"x\"]\n# ///\n", name)


@pytest.mark.parametrize("first_line, name, programs, command", [
    ("", "s.py", {"python"}, "python s.py"),
    ("", "s.R", {"Rscript"}, "Rscript s.R"),
    ("", "s.sh", set(), "/bin/sh s.sh"),
    ("", "s.bash", {"bash"}, "bash s.bash"),
    ("", "s.bash", set(), "/usr/bin/env bash s.bash"),
    ("", "s.py", set(), "python s.py"),  # (the build then says no package installs python)
    ("#!/usr/bin/env python3 -u\n", "tool", {"python3"}, "python3 -u tool"),
    ("#!/usr/bin/env -S python3 -u\n", "tool", {"python3"}, "python3 -u tool"),
    ("#!/usr/bin/python3\n", "tool", {"python3"}, "python3 tool"),  # the environment's
    ("#!/bin/bash -e\n", "s.sh", set(), "/bin/bash -e s.sh"),  # the host's
    ("#!/usr/bin/env perl\n", "s", set(), "/usr/bin/env perl s"),  # looked up when run
    ("#!/usr/bin/env coex-run\n", "s.py", {"python"}, "python s.py"),  # coex's own
    ("#!/usr/bin/env -S coex run\n", "s.py", {"python"}, "python s.py"),
    ("", "my script.py", {"python"}, "python 'my script.py'"),
])
def test_script_command(first_line, name, programs, command):
    assert script_command(_header(first_line, name), name, programs) == command


def test_run_with_comes_first():
    h = parse_script(EXECUTE_SCRIPT, "s.py")
    assert script_command(h, "s.py", {"python"}) == "python -u s.py"


def test_unknown_extension_without_shebang():
    with pytest.raises(CoexError, match=r"s\.xyz: cannot tell which program runs it"):
        script_command(_header("", "s.xyz"), "s.xyz", {"python"})


def test_the_readmes_scripts():
    """The two scripts README.md shows parse as it says."""
    import os
    import re

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Scripts that carry their environment"):]
    python, bash = re.findall(r"```(?:python|bash)\n(#!.*?)```", section, re.S)[:2]
    h = parse_script(python, "mean.py")
    assert h.specs == ("python 3.11.*", "numpy >=1.26")
    assert h.platforms == ("linux-64", "osx-arm64") and h.channels == ("conda-forge",)
    assert script_command(h, "mean.py", {"python"}) == "python mean.py"
    h = parse_script(bash, "tool")
    assert h.format == CONDA_EXECUTE and h.specs == ("ripgrep",)
    assert script_command(h, "tool", {"rg"}) == "/bin/bash tool"
