"""RuleRunner tests of the coex backend (tiny channel): `pants export`: conda @EXPLICIT files, and
the resolve installed as a conda prefix for this machine (by export's post-processing command,
which these tests run as the export goal does)."""
import os
import subprocess

from pants.core.goals.export import ExportResults
from pants.engine.fs import DigestContents

from coex.goals.export import ExportCoexResolves
from tests.backend.helpers import APP, LOCK, generate_lockfile, set_coex_options


def test_export_explicit_files_and_an_installed_environment(rule_runner, tiny_channel, tmp_path):
    generate_lockfile(rule_runner)
    set_coex_options(rule_runner, tiny_channel.url, "--export-resolve=tiny")
    (result,) = rule_runner.request(ExportResults, [ExportCoexResolves(())])
    assert result.reldir == "coex/tiny" and result.resolve == "tiny"
    assert "linux-64 environment (in linux-64/)" in result.description
    contents = {c.path: c.content for c in rule_runner.request(DigestContents, [result.digest])}
    assert sorted(contents) == [".linux-64.coex", "linux-64.explicit.txt"]
    lines = contents["linux-64.explicit.txt"].decode().splitlines()
    assert "@EXPLICIT" in lines
    urls = [line for line in lines if line.startswith("file:")]
    assert any("/linux-64/prefixprog-1.0-h0_0.conda#" in u for u in urls)
    assert all(len(u.rsplit("#", 1)[1]) == 32 for u in urls)  # md5 fragments

    # what the export goal does: write the digest under dist/export/<reldir>, run the commands
    root = tmp_path / "dist" / "export" / result.reldir
    rule_runner.write_digest(result.digest, path_prefix=os.path.relpath(root, rule_runner.build_root))
    for cmd in result.post_processing_cmds:
        argv = [arg.format(digest_root=root) for arg in cmd.argv]
        env = {"PATH": os.environ["PATH"], **cmd.extra_env, "COEX_ROOT": str(tmp_path / "cache")}
        proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    prefix = root / "linux-64"
    assert sorted(os.listdir(root)) == ["linux-64", "linux-64.explicit.txt"]  # archive removed
    out = subprocess.run([str(prefix / "bin" / "prefixprog")], stdout=subprocess.PIPE, text=True)
    assert out.stdout.strip().endswith(str(prefix))  # prefixes replaced for the export dir
    installed = {n.rsplit("-", 2)[0] for n in os.listdir(prefix / "conda-meta") if n.endswith(".json")}
    assert {"prefixprog", "libtiny", "tinypy", "python", "zstd"} <= installed


def test_which_resolves_without_resolve_option(rule_runner, tiny_channel):
    """`--resolve` names them; without it, the resolves of the targets given (`pants export ::`,
    as the Python backend in 2.17) or, with no targets (`pants export`), every used resolve (a
    resolve no target uses has nothing to export). It used to export nothing."""
    resolves = {"tiny": LOCK, "unused": "3rdparty/conda/unused.lock"}
    set_coex_options(rule_runner, tiny_channel.url, resolves=resolves)
    generate_lockfile(rule_runner)
    results = rule_runner.request(ExportResults, [ExportCoexResolves(())])
    assert [r.resolve for r in results] == ["tiny"]
    tgt = rule_runner.get_target(APP)
    assert [r.resolve for r in rule_runner.request(ExportResults, [ExportCoexResolves((tgt,))])] == ["tiny"]
    set_coex_options(rule_runner, tiny_channel.url, "--export-resolve=python-default",
                     resolves=resolves)
    assert list(rule_runner.request(ExportResults, [ExportCoexResolves(())])) == []
