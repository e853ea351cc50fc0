"""Every expected failure of `trm-fast` is one line `trm-fast COMMAND: error: ...` naming the problem, found
before the work starts: here devices and output paths of eval, bench, profile and solve (exit status 2). Training
is in tests/train/test_run_errors.py, datasets in tests/data/test_cli.py, a full disk in tests/test_disk.py."""

import pytest
import torch
from helpers import error_line
from trm_fast.cli.main import main


def _fails(args, capsys):
    """Run `trm-fast ARGS` in this process, a usage error; its error line, checked to be the only one."""
    assert main([str(a) for a in args]) == 2
    return error_line(capsys.readouterr().err, args[0])


@pytest.fixture
def unwritable(tmp_path):
    """Paths that even root cannot write: under a regular file, and in /proc."""
    (tmp_path / "file").write_text("not a directory")
    return {"under a file": (tmp_path / "file" / "out", f"{tmp_path / 'file'} is not a directory"),
            "in /proc": ("/proc/trm-fast-out", "cannot write into /proc")}


COMMANDS = {  # each command, as far as the checks go (the checkpoint and data need not exist)
    "eval": ["eval", "step_1.pt", "--data", "data"],
    "bench": ["bench", "tiny", "--reps", "1", "--warmup", "1"],
    "profile": ["profile", "tiny", "--steps", "1", "--warmup", "1"],
    "solve": ["solve", "0" * 81, "--checkpoint", "step_1.pt"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("device, message", [
    ("tpu", "--device tpu: not a device trm-fast runs on; use cpu, cuda or cuda:N"),
    ("cuda:99", "--device cuda:99: "),
])
def test_a_device_that_is_not_there(command, device, message, capsys):
    if device == "cuda:99" and not torch.cuda.is_available():
        message = "--device cuda:99: this torch is built without CUDA" if torch.version.cuda is None else \
            "--device cuda:99: no CUDA device is visible"
    assert message in _fails(COMMANDS[command] + ["--device", device], capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there")
def test_cuda_on_a_cpu_only_torch_says_what_to_use(capsys):
    assert _fails(COMMANDS["eval"] + ["--device", "cuda"], capsys).endswith("; use --device cpu")


@pytest.mark.parametrize("where", ["under a file", "in /proc"])
@pytest.mark.parametrize("command, option", [("eval", "--out"), ("eval", "--submission"), ("bench", "--png"),
                                             ("bench", "--json"), ("profile", "--out")])
def test_an_unwritable_output_is_refused_before_the_work(command, option, where, unwritable, capsys):
    path, why = unwritable[where]
    line = _fails(COMMANDS[command] + ["--device", "cpu", option, path], capsys)
    assert f"{option} {path}: {why}" in line and line.endswith("choose another path")


def test_eval_batch_size_zero_is_a_usage_error(capsys):
    assert _fails(COMMANDS["eval"] + ["--batch-size", "0"], capsys) == \
        "trm-fast eval: error: --batch-size must be >= 1, got 0"
