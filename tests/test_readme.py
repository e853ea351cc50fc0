"""The README's Python example runs as written (from a scratch directory, on the CPU)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})
    assert "tensor" in capsys.readouterr().out


def test_install_gives_the_cpu_wheel_before_the_two_commands_ci_runs():
    section = README.read_text().split("\n## Install and test\n")[1].split("\n## ")[0]
    assert re.findall(r"```bash\n(.*?)```", section, flags=re.S) == ['pip install ".[test]"\npython -m pytest\n']
    assert section.index("--index-url https://download.pytorch.org/whl/cpu") < section.index("```bash")


def test_troubleshooting_lists_the_errors_a_user_can_meet():
    section = README.read_text().split("\n## Troubleshooting\n")[1].split("\n## ")[0]
    for error in ("--device cuda", "backend 'fused'", "is not a directory", "the disk is full", "ulimit -f",
                  "--min-path-length", "differs from the checkpoint", "hidden_size 512", "repeats spread"):
        assert error in section, error
