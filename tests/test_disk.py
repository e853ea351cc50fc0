"""trm_fast.disk: a full disk is one error naming the file, whatever form the write's failure takes, and
nothing half-written or made for it is left."""

import errno

import pytest
from trm_fast.disk import DiskFullError, atomic_file, check_free_space, make_dirs, remove_dirs


@pytest.mark.parametrize("error, message", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full: free some space or write elsewhere"),
    (OSError(errno.EFBIG, "File too large"), "larger than the file-size limit (ulimit -f)"),
    (OSError("4096 requested and 512 written"), "the disk is full"),  # numpy's short write
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), "the disk is full"),
])
def test_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, error, message):
    path = tmp_path / "new" / "result.json"
    make_dirs(path.parent)
    path.write_text("old")
    with pytest.raises(DiskFullError) as caught:
        with atomic_file(path) as f:
            f.write("new")
            raise error
    assert str(caught.value).startswith(f"cannot write {path}: ") and message in str(caught.value)
    assert path.read_text() == "old" and [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_other_write_errors_stay_what_they_are(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_file(tmp_path / "x"):
            raise PermissionError(errno.EACCES, "Permission denied")
    assert not list(tmp_path.iterdir())


def test_free_space_is_checked_before_writing(tmp_path):
    with pytest.raises(DiskFullError, match=r"cannot write .*big: the array needs 1048576.0 MiB and the disk has "):
        check_free_space(tmp_path / "big", 2**40, "the array")
    check_free_space(tmp_path / "small", 1, "the array")


def test_directories_made_for_a_failed_write_are_removed(tmp_path):
    (tmp_path / "a").mkdir()
    top = make_dirs(tmp_path / "a" / "b" / "c" / "run")
    assert top == str(tmp_path / "a" / "b")
    (tmp_path / "a" / "b" / "c" / "run" / "config.yaml").write_text("x")
    (tmp_path / "a" / "kept").write_text("x")
    remove_dirs(tmp_path / "a" / "b" / "c" / "run", top)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept"]
