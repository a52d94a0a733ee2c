"""A run refuses to start when the project's code changed after its process imported it
(recbole_lda/quick_start/provenance.py), and its results file records the code's fingerprint."""

import pytest

from recbole_lda.quick_start import provenance


def test_fingerprint_names_what_changed(tmp_path, monkeypatch):
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    for f in files:
        f.write_text("x = 1\n")
    monkeypatch.setattr(provenance, "source_files", lambda: files)
    monkeypatch.setattr(provenance, "_AT_IMPORT", provenance.fingerprint(files))
    provenance.check_code_unchanged()  # nothing changed
    files[1].write_text("x = 2\n")
    with pytest.raises(RuntimeError, match=r"code changed after this process started \(.*b\.py\)"):
        provenance.check_code_unchanged()


def test_fingerprint_depends_on_contents_only_through_each_file():
    files = provenance.source_files()
    assert any(f.name == "lda.py" for f in files) and any(f.name == "vr.py" for f in files)
    total, per_file = provenance.fingerprint(files)
    assert total == provenance.code_sha256() and len(per_file) == len(files)


def test_a_run_stops_before_any_work_when_the_code_changed(monkeypatch, tmp_path):
    from recbole_lda.quick_start.quick_start import run

    monkeypatch.setattr(provenance, "_AT_IMPORT", ("stale", {}))
    with pytest.raises(RuntimeError, match="start the command again"):
        run("VR", "synthetic", config_dict={"data_path": str(tmp_path / "data")})
    assert not (tmp_path / "data").exists()
