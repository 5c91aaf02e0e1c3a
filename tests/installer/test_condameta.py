"""coex_runtime/condameta.py: conda-meta records as conda 23 dumps them (the fields of its
PackageRecord, no others), the link type conda records, conda-meta/history."""
from coex_runtime import condameta


def test_a_record_keeps_condas_fields_only():
    index = {"name": "app", "version": "0.1", "build": "0", "build_number": 0, "subdir": "linux-64",
             "depends": ["python"], "license": "BSD", "arch": "x86_64", "platform": "linux",
             "app_entry": "app", "icon": "icon.png", "type": "app", "summary": "An app",
             "run_exports": {"weak": ["app"]}, "features": "", "track_features": "fast"}
    entry = {"name": "app", "version": "0.1", "build": "0", "build_number": 0, "subdir": "linux-64",
             "filename": "app-0.1-0.tar.bz2", "url": "file:///c/linux-64/app-0.1-0.tar.bz2",
             "channel": "file:///c", "sha256": "ab" * 32, "md5": "cd" * 16, "size": 10,
             "depends": ["python"], "constrains": [], "noarch": None, "timestamp": 1,
             "encoding": "tar.zst", "member": "pkgs/app-0.1-0.tar.zst", "stored_sha256": "ef" * 32,
             "stored_size": 9}
    rec = condameta.make_record(entry, index, ["bin/app"], [{"_path": "bin/app", "path_type": "hardlink"}],
                                "/cache/pkgs/ef", ["app"], 3)
    assert sorted(rec) == sorted([
        "name", "version", "build", "build_number", "subdir", "depends", "constrains", "license",
        "arch", "platform", "track_features", "fn", "url", "channel", "sha256", "md5", "size",
        "timestamp", "requested_spec", "requested_specs", "extracted_package_dir", "files",
        "paths_data", "link"])
    assert rec["constrains"] == [] and rec["fn"] == "app-0.1-0.tar.bz2"
    assert rec["link"] == {"source": "/cache/pkgs/ef", "type": 3}
    assert rec["requested_spec"] == "app" and rec["requested_specs"] == ["app"]
    assert set(rec) - {"requested_specs", "extracted_package_dir", "files", "paths_data", "link",
                       "requested_spec"} <= condameta.RECORD_FIELDS
