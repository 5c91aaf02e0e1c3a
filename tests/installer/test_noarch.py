"""coex_runtime/noarch.py: noarch: python packages (CEP 17 site-packages, .pyc compiled by the
environment's own python in several processes)."""
import os

from coex_runtime import noarch
from tests.factory.condapkg import Member, PackageMeta, info_files, write_archive
from tests.installer import helpers


def test_noarch_python_site_packages_path_cep17(tmp_path, tiny_channel):
    """A python whose index.json declares python_site_packages_path (CEP 17, e.g. free-threaded
    builds) gets noarch packages there; .pyc are compiled and recorded where python put them."""
    import json
    import sys

    host = "/root/.pyenv/versions/3.9.18/bin/python3.9"
    if not os.path.exists(host):
        host = sys.executable
    members = [Member("bin/python3.9", data=('#!/bin/sh\nexec "%s" "$@"\n' % host).encode(),
                      mode=0o755)]
    meta = PackageMeta("python", "3.9.18", "h0_cep17")
    info = info_files(meta, members)
    index = json.loads(info["info/index.json"])
    index["python_site_packages_path"] = "lib/python3.9t/site-packages"
    info["info/index.json"] = json.dumps(index).encode()
    py = helpers.entry_from_file(
        write_archive(tmp_path / "python-3.9.18-h0_cep17.conda", info, members), meta.index_json())
    tp = helpers.entry_from_file(tiny_channel.file("tinypy"), noarch="python")
    env = helpers.coex_install([py, tp], tmp_path / "pkgs", tmp_path / "env")
    sp = env / "lib/python3.9t/site-packages/tinypy"
    assert (sp / "cli.py").exists() and not (env / "lib/python3.9").exists()
    rec = helpers.conda_meta(env)["tinypy-1.0-pyh0_0.json"]
    pycs = [p["_path"] for p in rec["paths_data"]["paths"] if p["path_type"] == "pyc_file"]
    assert "lib/python3.9t/site-packages/tinypy/__pycache__/cli.cpython-39.pyc" in pycs
    assert all((env / p).exists() for p in pycs)


def test_pyc_compiled_by_several_processes(tmp_path, monkeypatch):
    """Enough source for several compiling processes: every file that compiles gets its .pyc,
    recorded in conda-meta; one that does not is skipped."""
    import subprocess
    import sys

    host = "/root/.pyenv/versions/3.9.18/bin/python3.9"
    if not os.path.exists(host):
        host = sys.executable
    py = helpers.small_package(tmp_path, "python", {"bin/python3.9": ("exec", '#!/bin/sh\nexec "%s" "$@"\n' % host)})
    py["version"] = "3.9.18"
    files = dict(("site-packages/many/m%02d.py" % k, "X = %d\n" % k + "# pad\n" * 400)
                 for k in range(12))
    files["site-packages/many/bad.py"] = "def broken(:\n"
    many = helpers.small_package(tmp_path, "many", files, noarch="python")
    calls = []
    real_popen = subprocess.Popen

    def counting_popen(args, **kw):
        calls.append(args)
        return real_popen(args, **kw)

    monkeypatch.setattr(noarch, "PYC_CHUNK_BYTES", 4096)
    monkeypatch.setattr(subprocess, "Popen", counting_popen)
    env = helpers.coex_install([py, many], tmp_path / "pkgs", tmp_path / "env")
    compilers = [a for a in calls if noarch._COMPILE in a]
    assert len(compilers) == min(len(os.sched_getaffinity(0)), 13), calls
    rec = helpers.conda_meta(env)[many["filename"][:-len(".conda")] + ".json"]
    pycs = sorted(p["_path"] for p in rec["paths_data"]["paths"] if p["path_type"] == "pyc_file")
    sp = "lib/python3.9/site-packages/many/__pycache__/"
    assert pycs == [sp + "m%02d.cpython-39.pyc" % k for k in range(12)]
    assert all((env / p).is_file() for p in pycs)
    assert not list((env / sp).glob("bad.*"))
    assert set(pycs) <= set(rec["files"])


def test_pyc_are_kept_for_the_next_environment_with_the_same_python(tmp_path, monkeypatch):
    """The .pyc a first environment compiled are kept in the package cache: a second
    environment with the same python links them (no python started), records them alike, and
    its python finds them valid; a file that does not compile is not tried again. Another
    python, or a package whose .py has a prefix placeholder, compiles its own."""
    import subprocess
    import sys

    host = "/root/.pyenv/versions/3.9.18/bin/python3.9"
    if not os.path.exists(host):
        host = sys.executable
    py = helpers.small_package(tmp_path, "python", {"bin/python3.9": ("exec", '#!/bin/sh\nexec "%s" "$@"\n' % host)})
    py["version"] = "3.9.18"
    many = helpers.small_package(tmp_path, "many", {"site-packages/many/__init__.py": "X = 1\n",
                                                    "site-packages/many/bad.py": "def broken(:\n"},
                                 noarch="python")
    pkgs = tmp_path / "pkgs"
    first = helpers.coex_install([py, many], pkgs, tmp_path / "env1")
    calls = []
    real_popen = subprocess.Popen

    def counting_popen(args, **kw):
        calls.append(args)
        return real_popen(args, **kw)

    monkeypatch.setattr(subprocess, "Popen", counting_popen)
    second = helpers.coex_install([py, many], pkgs, tmp_path / "env2")
    assert [a for a in calls if noarch._COMPILE in a] == []
    name = many["filename"][:-len(".conda")] + ".json"
    recs = [helpers.conda_meta(env)[name] for env in (first, second)]
    assert recs[0]["files"] == recs[1]["files"] and recs[0]["paths_data"] == recs[1]["paths_data"]
    pyc = "lib/python3.9/site-packages/many/__pycache__/__init__.cpython-39.pyc"
    assert pyc in recs[1]["files"] and (second / pyc).read_bytes() == (first / pyc).read_bytes()
    r = real_popen([str(second / "bin/python3.9"), "-v", "-c", "import many"], stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, env={"PYTHONPATH": str(second / "lib/python3.9/site-packages")})
    err = r.communicate()[1].decode()
    assert "%s matches" % (second / pyc) in err, err
    # another python (3.9 again, another build): compiles its own
    py2 = helpers.small_package(tmp_path / "other", "python", {"bin/python3.9": ("exec", '#!/bin/sh\n# another\nexec "%s" "$@"\n' % host)})
    py2["version"] = "3.9.18"
    calls[:] = []
    helpers.coex_install([py2, many], pkgs, tmp_path / "env3")
    assert len([a for a in calls if noarch._COMPILE in a]) == 1
    # a .py with the prefix in it: each environment compiles it
    from tests.factory.condapkg import LONG_PLACEHOLDER
    where = helpers.small_package(tmp_path, "where", {"site-packages/where.py": "P = %r\n" % LONG_PLACEHOLDER},
                                  noarch="python", prefix_files={"site-packages/where.py": (LONG_PLACEHOLDER, "text")})
    for k in (4, 5):
        calls[:] = []
        env = helpers.coex_install([py, where], pkgs, tmp_path / ("env%d" % k))
        assert len([a for a in calls if noarch._COMPILE in a]) == 1
        assert (env / "lib/python3.9/site-packages/__pycache__/where.cpython-39.pyc").is_file()
