"""coex_runtime/variables.py: how the environment variables the runtime reads are understood."""
from coex_runtime.variables import LC_REEXEC, Variables
from tests.runtime import rt_helpers as H


def test_flags_paths_and_texts():
    v = Variables({"COEX_TOOLS": " Off ", "COEX_VERBOSE": "yes", "HOME": "/h", "XDG_CACHE_HOME": "rel",
                   "TMPDIR": "", "COEX_ROOT": "", "COEX_ENTRYPOINT": "ep", LC_REEXEC: "{}"})
    assert (v.tools, v.verbose) == (False, True)
    assert (v.home, v.xdg_cache_home, v.tmpdir) == ("/h", None, None)  # only absolute paths
    assert (v.root, v.entrypoint, v.archive) == (None, "ep", None)      # empty means unset
    assert v.pop_lc_reexec() == "{}" and v.lc_reexec is None
    v.set_identity("/a/app.coex", "./app.coex")
    assert (v.archive, v.argv0) == ("/a/app.coex", "./app.coex")
    assert not Variables({}).tools and Variables({"COEX_TOOLS": "1"}).tools


def test_coex_tools_and_verbose_set_to_0_mean_off(std_archive, root):
    arc, info = std_archive
    for _ in ("cold", "warm"):
        for off in ("0", "false", "no", "off"):
            r = H.run(arc, root=root, env={"COEX_TOOLS": off, "COEX_VERBOSE": off})
            assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)
            assert r.stderr.decode() == ""
    r = H.run(arc, root=root, env={"COEX_TOOLS": "yes"})
    assert r.returncode == 2 and "usage: COEX_TOOLS=1" in r.stdout.decode()
