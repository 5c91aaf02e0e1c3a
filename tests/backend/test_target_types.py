"""RuleRunner tests of target_types: what a `coex_binary` target accepts, checked when it is
read (entry points, env, platforms)."""
from tests.backend.helpers import APP, BUILD, expect_error, package


def test_env_field_names(rule_runner):
    for bad in ('{"": "x"}', '{"A=B": "y"}'):
        rule_runner.write_files(
            {"app/BUILD": BUILD.replace('env={"APP_MODE": "test"}', f"env={bad}")}
        )
        expect_error(lambda: rule_runner.get_target(APP), "`env` field of app:app", "without `=`")


def test_no_entry_point_is_a_target_error(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('entry_point="prefixprog",', "")})
    expect_error(lambda: rule_runner.get_target(APP), "app:app", "no entry point", "entry_point")


def test_unknown_platform(rule_runner):
    rule_runner.write_files(
        {"app/BUILD": BUILD.replace('name="app",', 'name="app", platforms=["linux-arm64"],')}
    )
    expect_error(lambda: package(rule_runner, APP), "linux-arm64", "app:app", "linux-aarch64")


def test_entry_point_fields(rule_runner):
    def with_fields(fields):
        rule_runner.write_files(
            {"app/BUILD": BUILD.replace('entry_point="prefixprog",', fields)}
        )
        return rule_runner.get_target(APP)

    for fields, needles in [
        ('entry_point="a", entry_points={"b": "b"},', ("sets both",)),
        ('entry_point="a", default_entry_point="a",', ("`default_entry_point` without",)),
        ('entry_points={"a": "x"}, default_entry_point="b",',
         ("`default_entry_point` 'b' is not one of its entry points (a)",)),
        ('entry_points={"a": "x", "b": "y"},', ("no `default_entry_point`", "a, b")),
        ('entry_points={"bad name": "x"},', ("'bad name' is not valid",)),
    ]:
        expect_error(lambda: with_fields(fields), "app:app", *needles)
    assert with_fields('entry_points={"a": "x"},')  # one needs no default
