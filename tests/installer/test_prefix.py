"""coex_runtime/prefix.py: prefix placeholder replacement (text, NUL-padded binary) and long shebangs."""
import pytest

from coex_runtime import prefix

PH = b"/ph_" + b"x" * 60


def test_binary_replacement_pads_each_c_string():
    data = b"\x7fELF..." + PH + b"/lib:" + PH + b"/lib64\0tail" + b"\0" * 3 + PH + b"\0end"
    new = prefix.replace_binary(data, PH, b"/short", "pkg: bin/x")
    assert len(new) == len(data)
    first = b"/short/lib:/short/lib64"
    i = new.index(first)
    assert new[i + len(first): i + len(first) + len(data) - len(new)] == b""
    # the string keeps its slot: new contents, then NULs up to where the old NUL was
    old_len = len(PH + b"/lib:" + PH + b"/lib64")
    assert new[i:i + old_len] == first + b"\0" * (old_len - len(first))
    assert new.endswith(b"/short" + b"\0" * (len(PH) - len(b"/short")) + b"\0end")
    assert PH not in new


def test_binary_replacement_too_long_names_the_file():
    with pytest.raises(prefix.PrefixError) as ei:
        prefix.replace_binary(b"a" + PH + b"\0", PH, b"/" + b"y" * 100, "pkg-1.0-0.conda: bin/x")
    assert "pkg-1.0-0.conda: bin/x" in str(ei.value) and "placeholder" in str(ei.value)


def test_text_replacement_everywhere():
    data = b"a=" + PH + b"\nb=" + PH + b"/lib\n"
    assert prefix.replace_text(data, PH, b"/opt/env") == b"a=/opt/env\nb=/opt/env/lib\n"


def test_shebangs():
    long_prefix = b"/" + b"p" * 130
    # python: the sh re-exec form (that exact python)
    out = prefix.replace_text(b"#!" + PH + b"/bin/python3.11 -E\nprint(1)\n", PH, long_prefix)
    assert out == (b"#!/bin/sh\n'''exec' \"" + long_prefix + b"/bin/python3.11\" -E \"$0\" \"$@\" "
                   b"#'''\nprint(1)\n")
    # anything else: /usr/bin/env <prog> <args>
    out = prefix.replace_text(b"#!" + PH + b"/bin/perl -w\nprint 1;\n", PH, long_prefix)
    assert out == b"#!/usr/bin/env perl -w\nprint 1;\n"
    # short enough: untouched
    out = prefix.replace_text(b"#!" + PH + b"/bin/perl\n", PH, b"/opt/e")
    assert out == b"#!/opt/e/bin/perl\n"
    # a blank in the prefix cannot be in a shebang
    out = prefix.replace_text(b"#!" + PH + b"/bin/bash\necho " + PH + b"\n", PH, b"/opt/my env")
    assert out == b"#!/usr/bin/env bash\necho /opt/my env\n"
