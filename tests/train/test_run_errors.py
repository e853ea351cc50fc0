"""`trm-fast train` failures: one line, found before the run starts where they can be, exit status 2 for
bad input and 1 for a full disk."""

import os

import pytest
from helpers import error_line
from trm_fast.cli.main import main
from trm_fast.train import load_config, train

from _trainutil import run_cli, tiny_overrides


@pytest.mark.parametrize("where", ["file", "proc"])
def test_an_unwritable_run_directory_is_refused_before_the_run(reverse_data, tmp_path, where, capsys):
    (tmp_path / "file").write_text("not a directory")
    run_dir = tmp_path / "file" / "run" if where == "file" else "/proc/trm-fast-run"
    assert main(["train", "tiny", *tiny_overrides(reverse_data(), run_dir)]) == 2
    assert f"checkpoint_path {run_dir}: " in error_line(capsys.readouterr().err, "train")


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(reverse_data, tmp_path):
    data, run_dir = reverse_data(), tmp_path / "run"
    train(load_config("tiny", tiny_overrides(data, run_dir, "epochs=2")))
    saved = (run_dir / "step_4.pt").read_bytes()
    assert len(saved) > 1_000_000  # the limit below lets the logs through, not a checkpoint
    proc = run_cli("train", "tiny", *tiny_overrides(data, run_dir, "epochs=4"), "--resume", file_size_limit=1_000_000)
    assert proc.returncode == 1, proc.stderr
    assert error_line(proc.stderr, "train") == (
        f"trm-fast train: error: cannot write {run_dir / 'step_8.pt'}: the file is larger than the file-size limit "
        "(ulimit -f): raise it or write elsewhere")
    assert (run_dir / "step_4.pt").read_bytes() == saved
    assert not [p for p in os.listdir(run_dir) if ".tmp" in p or p == "step_8.pt"]
