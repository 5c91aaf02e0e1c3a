"""RuleRunner tests of util_rules/app (tiny channel): the app layer as the archive carries it:
files keep their paths, resources are source-root stripped, modes kept, odd names, empty."""
import os
import stat
import zipfile

from tests.backend.helpers import APP, BUILD, archive_info, generate_lockfile, package, write_built


def test_app_layer_files_resources_odd_names_modes(rule_runner):
    rule_runner.write_files(
        {
            "app/BUILD": BUILD.replace('dependencies=[":srcs", ":data"]', 'dependencies=[":srcs", ":data", ":odd", ":scripts"]')
            + 'files(name="odd", sources=["odd/*"])\nfiles(name="scripts", sources=["bin/*"])\n',
            "app/odd/with space.txt": "s\n",
            "app/odd/ünïcödé ✓.txt": "u\n",
            "app/bin/run.sh": "#!/bin/sh\necho run\n",
        }
    )
    os.chmod(os.path.join(rule_runner.build_root, "app/bin/run.sh"), 0o755)
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, APP))
    path, _ = archive_info(rule_runner, relpath)
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert "app/app/odd/with space.txt" in infos
    assert "app/app/odd/ünïcödé ✓.txt" in infos
    assert "app/myapp/main.py" in infos
    mode = infos["app/app/bin/run.sh"].external_attr >> 16
    assert stat.S_IMODE(mode) == 0o755, oct(mode)
    assert stat.S_IMODE(infos["app/myapp/main.py"].external_attr >> 16) == 0o644


def test_empty_app_layer(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('dependencies=[":srcs", ":data"],', "")})
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, APP))
    path, archive = archive_info(rule_runner, relpath)
    with zipfile.ZipFile(path) as zf:
        assert not [n for n in zf.namelist() if n.startswith("app/")]


def test_mode_change_alone_rebuilds_and_resources_keep_modes(rule_runner):
    rule_runner.write_files(
        {
            "app/BUILD": BUILD + 'resources(name="tool", sources=["src/tool.sh"])\n',
            "app/src/tool.sh": "#!/bin/sh\necho tool\n",
        }
    )
    rule_runner.write_files({"app/BUILD": rule_runner.read_file("app/BUILD").replace(
        'dependencies=[":srcs", ":data"]', 'dependencies=[":srcs", ":data", ":tool"]')})
    generate_lockfile(rule_runner)

    def tool_mode():
        (relpath,) = write_built(rule_runner, package(rule_runner, APP))
        path, _ = archive_info(rule_runner, relpath)
        with zipfile.ZipFile(path) as zf:
            return stat.S_IMODE(zf.getinfo("app/tool.sh").external_attr >> 16)

    assert tool_mode() == 0o644
    os.chmod(os.path.join(rule_runner.build_root, "app/src/tool.sh"), 0o755)
    rule_runner.write_files({"app/src/tool.sh": "#!/bin/sh\necho tool\n"})  # same bytes
    os.chmod(os.path.join(rule_runner.build_root, "app/src/tool.sh"), 0o755)
    assert tool_mode() == 0o755
