import pytest

from coex.lib.envspec import check_specs, load_environment_file, parse_environment_text
from coex.lib.errors import CoexError


def parse(text):
    return parse_environment_text(text, "env/environment.yml")


def test_good_file(tmp_path):
    p = tmp_path / "environment.yml"
    p.write_text("name: demo\nchannels:\n  - conda-forge\n  - nodefaults\n"
                 "dependencies:\n  - python=3.11\n  - numpy  >=1.26\n  - numpy  >=1.26\n")
    spec = load_environment_file(p)
    assert spec.name == "demo"
    assert spec.channels == ["conda-forge"]          # nodefaults is conda's marker, dropped
    assert spec.specs == ["python=3.11", "numpy >=1.26"]   # whitespace normalised, deduplicated
    assert spec.origin == str(p)


@pytest.mark.parametrize("text, needle", [
    ("dependencies: [python\n  - x: {", "is not valid YAML"),
    ("- just\n- a list\n", "must be a YAML mapping"),
    ("", "must be a YAML mapping"),
    ("channels: [conda-forge]\n", "has no dependencies"),
    ("channels: [conda-forge]\ndependencies: []\n", "has no dependencies"),
    ("dependencies:\n  - python\n  - pip:\n    - -e .\n", "is an editable install"),
    ("dependencies:\n  - python\n  - pip:\n    - ./proj\n", "is a local project or file"),
    ("dependencies:\n  - python\n  - pip:\n    - -r req.txt\n", "not supported in a `pip:` section"),
    ("dependencies:\n  - python\n  - pip: requests\n", "`pip:` must be a list"),
    ("dependencies:\n  - python\n  - pip: [a]\n  - pip: [b]\n", "two `pip:` sections"),
    ("dependencies:\n  - python\n  - pip: ['requests[']\n", "invalid PyPI requirement"),
    ("dependencies: [python]\nvariables: {A: 1}\n", "`variables:` is not supported yet"),
    ("dependencies: [python]\nchanels: [conda-forge]\n", "unknown key(s) 'chanels'"),
    ("dependencies: [python]\nchannels: conda-forge\n", "`channels` must be a list"),
    ("dependencies: python\n", "`dependencies` must be a list"),
    ("dependencies: [python, 3]\n", "is not a conda match spec string"),
])
def test_bad_files(text, needle):
    with pytest.raises(CoexError) as e:
        parse(text)
    assert needle in str(e.value)
    assert "env/environment.yml" in str(e.value)


def test_bad_matchspec_shows_rattlers_message(tmp_path):
    """Reading a file is pure (the Pants rules do it in-process); py-rattler checks its specs."""
    text = "dependencies:\n  - python\n  - numpy >=>1\n"
    assert parse(text).specs == ["python", "numpy >=>1"]
    with pytest.raises(CoexError) as e:
        check_specs(parse(text).specs, "env/environment.yml")
    msg = str(e.value)
    assert "env/environment.yml: invalid conda match spec 'numpy >=>1'" in msg
    assert "unable to parse version spec: >=>1" in msg      # py-rattler's own explanation


def test_missing_file(tmp_path):
    with pytest.raises(CoexError, match="Cannot read environment file"):
        load_environment_file(tmp_path / "nope.yml")


def test_spec_without_range_operator_is_refused_at_parse_time_with_the_fix():
    """`python 3.11` is what the solver refuses too: say so when the file is read, with py-rattler's
    suggestion, instead of failing later inside the solve."""
    with pytest.raises(CoexError, match=r"invalid conda match spec 'python 3.11'.*Did you mean"):
        check_specs(["python 3.11"], "environment.yml")


def test_loading_a_file_checks_its_specs(tmp_path):
    p = tmp_path / "environment.yml"
    p.write_text("dependencies:\n  - numpy >=>1\n")
    with pytest.raises(CoexError, match="invalid conda match spec 'numpy >=>1'"):
        load_environment_file(p)


def test_yaml_errors_keep_their_lines_and_markers():
    """PyYAML's message is kept on its own lines (not squashed onto one), so each `^` still
    points at the character under it."""
    with pytest.raises(CoexError) as e:
        parse("dependencies: [python\n  - x: {")
    lines = str(e.value).splitlines()
    assert lines[0] == "env/environment.yml is not valid YAML:"
    source = next(i for i, line in enumerate(lines) if line.strip() == "dependencies: [python")
    assert lines[source + 1].index("^") == lines[source].index("[")
    assert "<unicode string>" not in str(e.value)
    assert any(line.strip() == "line 1, column 15:" for line in lines)


def test_pip_section():
    env = parse_environment_text(
        "dependencies:\n  - python\n  - pip:\n    - Rich[Jupyter] >=13\n    - --find-links wheels\n"
        "    - --no-index\n    - six==1.16.0; python_version < '4'\n", "env/environment.yml",
        "/repo/env")
    assert env.specs == ["python"]
    assert env.pypi == ("rich[jupyter]>=13", "six==1.16.0; python_version < \"4\"")
    assert env.pip_options.find_links == ("/repo/env/wheels",)
    assert env.pip_options.no_index


def test_no_pip_section():
    env = parse_environment_text("dependencies: [python]\n", "env/environment.yml")
    assert env.pypi == () and env.pip_options is None
