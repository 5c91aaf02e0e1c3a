"""coex's installer on real conda packages (the corpus: ``../shared/corpus``, or ``$COEX_CORPUS``;
see tests/installer/corpus.py), side by side with py-rattler 0.25's ``rattler.install``.

Every installable package of the corpus is installed alone (with its dependencies solved from
the corpus when it has link scripts, which may use them; with the stub python 3.9.1 when it is
noarch: python), and the two Miniconda package caches are installed as the environments they
were: the 2020 one (python pinned to the stub 3.9.1) and the 2016 one (the packages its
conda-meta lists, as recorded; no solve: the corpus has no python 3.4). Both tools install into
prefixes of the same length and the trees and conda-meta are compared (oracle.py lists the
differences allowed, with their reasons). One extraction cache per tool is shared by all tests
(and all xdist workers). The packages no installer can install are tested apart: both refuse
them, and coex says which package and which file.
"""
import os
from pathlib import Path

import pytest

from tests.installer import corpus, helpers, oracle

ROOT = corpus.location()
pytestmark = pytest.mark.skipif(ROOT is None, reason=corpus.MISSING)
ROWS = corpus.manifest(ROOT) if ROOT else []

# the packages nobody can install, and why (each is tested below)
STRIPPED = {  # conda-index's maintainers removed the payload: both tools refuse them
    "noarch/flask-0.11.1-py_0.tar.bz2": "site-packages/Flask-0.11.1-py3.5.egg-info/PKG-INFO",
    "noarch/spiffy-test-app-0.5-pyh6afbcc8_0.tar.bz2": "python-scripts/.spiffy-test-app-post-link.sh",
    "osx-64/fly-2.5.2-0.tar.bz2": "bin/fly",
    "osx-64/nano-2.4.1-0.tar.bz2": "bin/nano",
}
FAILING_POST_LINK = {  # conda aborts the install (rattler 0.25 only logs it): so does coex
    "noarch/failing_post_link-1.0-0.conda": ("exit 1", "+ exit 1"),
    # they run a Jupyter program whose `#!<prefix>/bin/python` (3.4) the corpus cannot have
    "linux-64/widgetsnbextension-1.2.6-py34_3.tar.bz2": ("exit status 127", "jupyter-nbextension"),
    "linux-64/jupyter_nbextensions_configurator-0.2.1-py34_2.tar.bz2": (
        "exit status 127", "jupyter-nbextensions_configurator"),
}
ALONE = sorted(r["key"] for r in ROWS if r["key"] not in STRIPPED and r["key"] not in FAILING_POST_LINK)
# the Miniconda caches as environments: 2020, all of it; 2016, what its conda-meta lists (the
# package files whose md5 matched it) but jupyter_nbextensions_configurator (see above)
ENVS = {
    "2020": [r["key"] for r in ROWS if r["source"].startswith(corpus.CACHE_2020)],
    "2016": [r["key"] for r in ROWS if r["source"].startswith(corpus.CACHE_2016)
             and r["verified"].startswith("OK md5(conda-meta)") and r["key"] not in FAILING_POST_LINK],
}
PYTHON = "python ==3.9.1"  # the stub (the corpus's noarch python-3.99.99 is a fake)


@pytest.fixture(scope="session")
def caches(tmp_path_factory):
    """One package cache per tool for every test, shared by xdist workers (both caches are safe
    to share: coex's is content-addressed and atomic, rattler's locked); rattler keys its cache by
    name-version-build, so .conda and .tar.bz2 packages of the same name get one each."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / "corpus-caches"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def recs():
    out = corpus.records(ROOT)
    stubs = corpus.records(ROOT, "stubs")
    out["python"] = [r for r in stubs.values() if r.name.normalized == "python"
                     and str(r.version) == "3.9.1"][0]
    return out


@pytest.fixture
def short():
    d = corpus.ShortDir()
    yield d
    d.remove()


def _solve(specs, platform):
    from rattler import ChannelPriority

    from tests.factory.fixtures import rattler_solve
    return helpers.install_order(rattler_solve(
        [ROOT / "channel", ROOT / "stubs"], specs, platform=platform, constraints=[PYTHON],
        channel_priority=ChannelPriority.Disabled))


def _spec(r):
    return "%s ==%s %s" % (r.name.normalized, r.version, r.build)


def _records_alone(key, recs):
    """The package, with its dependencies when it has link scripts and they are in the corpus
    (a py27 package's are not: then alone), with the stub python when it is noarch: python."""
    from rattler.exceptions import SolverError
    r = recs[key]
    row = [x for x in ROWS if x["key"] == key][0]
    if row["link_scripts"]:
        try:
            return _solve([_spec(r)], corpus.platform_of(key))
        except SolverError:
            pass
    return [recs["python"], r] if r.noarch.python else [r]


def _install_both(records, caches, prefixes, key, specs=()):
    from tests.factory.fixtures import rattler_install_records

    r_prefix, c_prefix = prefixes
    ext = "tar.bz2" if key.endswith(".tar.bz2") else "conda"
    rattler_install_records(records, r_prefix, platform=corpus.platform_of(key),
                            cache_dir=caches / ("rattler-" + ext), specs=specs,
                            execute_link_scripts=True)
    entries = [helpers.entry_from_record(r) for r in records]
    return helpers.coex_install(entries, caches / "coex-pkgs", c_prefix, requested_specs=specs)


@pytest.mark.parametrize("key", ALONE)
def test_package_alone(key, recs, caches, short):
    records = _records_alone(key, recs)
    pair = short.pair("p", 32)
    _install_both(records, caches, pair, key, [_spec(recs[key])])
    oracle.compare_prefixes(*pair)
    oracle.compare_conda_meta(*pair)
    assert not (pair[1] / ".messages.txt").exists()


# --- against the prefixes conda itself installed (tests/installer/conda_prefixes) -----------
# differences allowed, with their reasons:
# * the console scripts of noarch: python packages (bin/tqdm, bin/wheel): conda 4.9 writes its
#   own template, coex rattler's (same shebang, module and function); compared: mode and shebang
# * record fields coex writes and these older condas did not: `arch` and `platform` (conda 4.9
#   took the record from Anaconda's repodata, which had none; coex from index.json, as rattler),
#   `sha256` and `fn` (conda 4.1 recorded the md5 alone, and the file name of some packages),
#   `requested_spec` (conda 4.1 had none)
# * record fields conda 4.9 wrote and conda 23 (and coex) do not: `features` and
#   `track_features` when empty ("" in conda 4.9)
# * `requested_spec`: what conda's installer was asked for (constructor: `name==version=build`)
#   versus the archive's specs
# * jupyter_nbextensions_configurator (2016) is not installed (see FAILING_POST_LINK)
CONDA_ONLY_FIELDS = {"features": "", "track_features": ""}
COEX_ONLY_FIELDS = {"2020": {"arch", "platform"}, "2016": {"sha256", "fn", "requested_spec", "constrains"}}
NOT_COMPARED = {"requested_spec"}


def _against_conda(env, prefix):
    """coex's prefix (of the same length as conda's) against what conda installed: records,
    `files`, the bytes/mode/symlink of every file the snapshot kept, and conda's paths_data."""
    from tests.installer import conda_prefixes as CP
    data = CP.load(env)
    theirs, ours = data["prefix"].encode(), str(prefix).encode()
    meta = helpers.conda_meta(prefix)
    bad = []
    for dist, want in sorted(data["packages"].items()):
        if dist.startswith("jupyter_nbextensions_configurator-"):
            continue
        rec = meta[dist + ".json"]
        for k, v in want["record"].items():
            if k not in NOT_COMPARED and rec.get(k, CONDA_ONLY_FIELDS.get(k)) != v:
                bad.append("%s: %s: conda %r, coex %r" % (dist, k, v, rec.get(k)))
        extra = set(rec) - set(want["record"]) - {"files", "paths_data", "link", "url", "channel",
                                                  "extracted_package_dir", "requested_specs"}
        assert extra <= COEX_ONLY_FIELDS[env], (dist, extra)
        if set(rec["files"]) != set(want["files"]):
            bad.append("%s: files only conda's %s, only coex's %s" % (
                dist, sorted(set(want["files"]) - set(rec["files"]))[:5],
                sorted(set(rec["files"]) - set(want["files"]))[:5]))
        eps = set(p["_path"] for p in rec["paths_data"]["paths"]
                  if p["path_type"] == "unix_python_entry_point")
        for path, git in sorted(want["files"].items()):
            if not git or path not in rec["files"]:
                continue
            got = CP.git_entry(prefix / path, ours, theirs)
            if path in eps:
                assert got.split()[0] == git.split()[0] == "100755", (dist, path)
                assert (prefix / path).read_bytes().startswith(b"#!" + ours + b"/bin/python"), path
            elif got != git:
                bad.append("%s: %s: conda %s, coex %s" % (dist, path, git, got))
        ours_pd = dict((p["_path"], p) for p in rec["paths_data"]["paths"])
        for path, p in sorted(want["paths_data"].items()):
            q = ours_pd.get(path, {})
            for k, v in p.items():
                got = CP.digest_in_prefix(prefix / path, ours, theirs) if k == "sha256_in_prefix" \
                    else q.get(k)
                if got != v:
                    bad.append("%s: paths_data %s %s: conda %r, coex %r" % (dist, path, k, v, got))
    return bad


@pytest.mark.parametrize("env", sorted(ENVS))
def test_package_cache_as_environment(env, recs, caches, short):
    """Against rattler, and against the prefix conda installed from the same package files (in
    a prefix of the length of conda's, so that binary files compare byte for byte too)."""
    from tests.installer import conda_prefixes as CP
    keys = ENVS[env]
    if env == "2020":
        records = _solve([_spec(recs[k]) for k in keys], "linux-64")
        assert set(keys) <= set("%s/%s" % (r.subdir, r.file_name) for r in records)
    else:
        records = helpers.install_order([recs[k] for k in keys])
    pair = short.pair("e" + env, len(CP.load(env)["prefix"]))
    _install_both(records, caches, pair, keys[0], [_spec(recs[k]) for k in keys])
    oracle.compare_prefixes(*pair)
    oracle.compare_conda_meta(*pair)
    bad = _against_conda(env, pair[1])
    assert not bad, "\n".join(bad[:40])


@pytest.mark.parametrize("key", sorted(STRIPPED))
def test_stripped_package_is_refused_naming_package_and_file(key, recs, caches, short):
    from coex_runtime.install import InstallError
    records = _records_alone(key, recs)
    r_prefix, c_prefix = short.pair("p", 32)
    with pytest.raises(Exception):
        _install_both(records, caches, (r_prefix, short.path / "unused"), key)
    entries = [helpers.entry_from_record(r) for r in records]
    with pytest.raises(InstallError) as ei:
        helpers.coex_install(entries, caches / "coex-pkgs", c_prefix)
    msg = str(ei.value)
    manifest = "info/paths.json" if "spiffy" in key else "info/files"
    assert key.split("/")[1] in msg and STRIPPED[key] in msg and manifest in msg, msg
    assert not c_prefix.exists()


_LOCK_FIELDS = ("name", "version", "build", "build_number", "subdir", "filename", "url", "channel",
                "sha256", "md5", "size", "depends", "constrains", "noarch", "license", "timestamp")


def _archive(records, out):
    """A .coex archive of ``records`` (entry point `sh`), as a user gets it."""
    from coex_runtime import format as F
    from tests.runtime import rt_helpers as H
    pkgs = []
    for r in records:
        e = helpers.entry_from_record(r)
        pkgs.append({"path": e["path"], "entry": dict((k, e[k]) for k in _LOCK_FIELDS),
                     "encoding": e["encoding"]})
    return F.write_archive(str(out), records[-1].subdir, pkgs, {"sh": "sh -c"}, "sh",
                           libzstd_path=H.LIBZSTD, requested_specs=[_spec(records[-1])])


@pytest.mark.parametrize("key", sorted(FAILING_POST_LINK))
def test_failing_post_link_aborts_the_install(key, recs, tmp_path):
    """As conda: the first run stops before the program, nothing is left installed, and the
    message names the package and its script and shows what the script printed (and left in
    .messages.txt)."""
    from tests.runtime import rt_helpers as H
    r = recs[key]
    info = _archive(_records_alone(key, recs), tmp_path / "app.coex")
    root = tmp_path / "root"
    res = H.run(tmp_path / "app.coex", "echo ran", root=root)
    err = res.stderr.decode()
    assert res.returncode == 1 and b"ran" not in res.stdout, H.text(res)
    status, output = FAILING_POST_LINK[key]
    assert "post-link script of %s-%s-%s" % (r.name.normalized, r.version, r.build) in err, err
    assert "bin/.%s-post-link.sh" % r.name.normalized in err and status in err, err
    assert output in err and "Traceback" not in err, err
    assert not os.path.exists(H.prefix_of(root, info))
    assert [n for n in os.listdir(str(root / "envs")) if not n.endswith(".lock")] == []


def test_binary_placeholder_shorter_than_the_prefix_is_refused(recs, caches, short):
    """ncurses 5.9's binaries hold conda-build's 80-character placeholder: a longer prefix cannot
    be written into them; both tools refuse, coex naming the package, the file and the fix."""
    from coex_runtime.install import InstallError
    key = "linux-64/ncurses-5.9-8.tar.bz2"
    r_prefix, c_prefix = short.pair("long-prefix", 81)
    with pytest.raises(Exception, match="longer than the placeholder"):
        _install_both([recs[key]], caches, (r_prefix, short.path / "unused"), key)
    with pytest.raises(InstallError) as ei:
        helpers.coex_install([helpers.entry_from_record(recs[key])], caches / "coex-pkgs", c_prefix)
    msg = str(ei.value)
    assert key.split("/")[1] in msg and "lib/libtinfo.so.5.9" in msg and "81 bytes" in msg, msg
    assert "80 bytes" in msg and "COEX_ROOT" in msg, msg
    assert not c_prefix.exists()


def test_post_link_runs_in_the_activated_environment(recs, caches, short):
    """conda's fixture: its post-link script fails unless TEST_VAR=1, which its own
    etc/conda/activate.d/test.sh exports; under coex it passes (test_package_alone installs it
    too), and only there: run outside the environment (no activate.d), it fails."""
    import subprocess
    key = "noarch/post_link_run_in_env_package-1.0-0.conda"
    entries = [helpers.entry_from_record(x) for x in _records_alone(key, recs)]
    prefix = helpers.coex_install(entries, caches / "coex-pkgs", short.path / "env")
    script = prefix / "bin" / ".post_link_run_in_env_package-post-link.sh"
    assert (prefix / "etc" / "conda" / "activate.d" / "test.sh").is_file()
    env = dict(os.environ, PREFIX=str(prefix))
    env.pop("TEST_VAR", None)
    assert subprocess.run(["bash", str(script)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT).returncode != 0


@pytest.mark.parametrize("key", ["noarch/link-scripts-0.1.0-h4616a5c_0.conda",
                                 "osx-64/conda-index-pkg-a-1.0-py27h5e241af_0.tar.bz2"])
def test_link_script_messages_are_returned_and_removed(key, recs, caches, short):
    """What a post-link script writes to $PREFIX/.messages.txt is handed to the caller (the
    runtime prints it on stderr) and removed from the prefix, as conda does."""
    from coex_runtime import install
    r = recs[key]
    entries = [helpers.entry_from_record(x) for x in _records_alone(key, recs)]
    prefix = helpers.coex_install(entries, caches / "coex-pkgs", short.path / "env", finalize=False)
    messages = install.finalize_env(str(prefix), entries)
    assert not (prefix / ".messages.txt").exists()
    label = "%s-%s-%s" % (r.name.normalized, r.version, r.build)
    assert [m[0] for m in messages] == [label]
    if "conda-index" in key:  # it writes its PREFIX and PKG_* variables as JSON
        import json
        told = json.loads(messages[0][1])
        assert told["PREFIX"] == str(prefix) and told["PKG_NAME"] == r.name.normalized, told
    else:
        assert messages[0][1].strip(), messages


def test_prelink_messages_are_returned(recs, caches, short):
    from coex_runtime import install
    key = "noarch/pre_link_messages_package-1.0-0.conda"
    entries = [helpers.entry_from_record(x) for x in _records_alone(key, recs)]
    prefix = helpers.coex_install(entries, caches / "coex-pkgs", short.path / "env", finalize=False)
    messages = install.finalize_env(str(prefix), entries)
    assert [m[0] for m in messages] == ["pre_link_messages_package-1.0-0"], messages
    pkgdir = Path(helpers.conda_meta(prefix)["pre_link_messages_package-1.0-0.json"]["extracted_package_dir"])
    for f in (pkgdir / "info" / "prelink_messages").rglob("*"):
        if f.is_file() and f.read_text().strip():
            assert f.read_text().strip() in messages[0][1]


def test_messages_are_printed_on_the_first_run_only(recs, tmp_path):
    """conda prints a package's .messages.txt when it installs it: so does the first run of an
    archive, on stderr (stdout is the program's); later runs print nothing."""
    from tests.runtime import rt_helpers as H
    key = "noarch/link-scripts-0.1.0-h4616a5c_0.conda"
    info = _archive(_records_alone(key, recs), tmp_path / "app.coex")
    root = tmp_path / "root"
    first = H.run(tmp_path / "app.coex", "echo ran", root=root)
    assert first.returncode == 0 and first.stdout == b"ran\n", H.text(first)
    err = first.stderr.decode()
    assert "coex: a message from link-scripts-0.1.0-h4616a5c_0:\n" in err, err
    prefix = Path(H.prefix_of(root, info))
    assert not (prefix / ".messages.txt").exists()
    again = H.run(tmp_path / "app.coex", "echo ran", root=root)
    assert again.returncode == 0 and again.stdout == b"ran\n" and again.stderr == b"", H.text(again)
