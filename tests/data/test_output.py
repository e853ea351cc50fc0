"""The output directory is replaced only by a finished build, and never half-written."""

import pytest
from trm_fast.data import DatasetInputError
from trm_fast.data.output import staged_output


def entries(path):
    return sorted(p.name for p in path.iterdir())


def test_finished_build_becomes_out(tmp_path):
    with staged_output(tmp_path / "a/b/out") as stage:
        (stage / "x").write_text("1")
    assert entries(tmp_path / "a/b") == ["out"] and (tmp_path / "a/b/out/x").read_text() == "1"
    (tmp_path / "empty").mkdir()
    with staged_output(tmp_path / "empty") as stage:  # an empty directory needs no --force
        (stage / "y").write_text("2")
    assert entries(tmp_path / "empty") == ["y"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_build_leaves_nothing(tmp_path, error):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/old").write_text("kept")
    with pytest.raises(error):
        with staged_output(tmp_path / "out", force=True) as stage:
            (stage / "half").write_text("")
            raise error()
    assert entries(tmp_path) == ["out"] and entries(tmp_path / "out") == ["old"]
    with pytest.raises(error):
        with staged_output(tmp_path / "new"):
            raise error()
    assert entries(tmp_path) == ["out"]


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/old").write_text("")
    with pytest.raises(DatasetInputError, match=r"--out .*out: directory exists and is not empty; pass --force"):
        with staged_output(tmp_path / "out"):
            pass
    with staged_output(tmp_path / "out", force=True) as stage:
        (stage / "new").write_text("")
    assert entries(tmp_path) == ["out"] and entries(tmp_path / "out") == ["new"]
    (tmp_path / "file").write_text("")
    with pytest.raises(DatasetInputError, match=r"--out .*file: exists and is not a directory"):
        with staged_output(tmp_path / "file", force=True):
            pass
