"""README's usage example runs as written, and its two commands match what CI runs."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_usage_example_runs(capsys):
    exec(compile(BLOCKS[0], "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "(8, 16, 32, 32) (8, 3, 32, 32) (16, 3, 5, 5) (16,)"


def test_every_readme_example_runs(tmp_path, monkeypatch, capsys):
    """The layer and training examples too, as written (in a scratch folder: one saves a file)."""
    monkeypatch.chdir(tmp_path)
    assert len(BLOCKS) >= 3
    for code in BLOCKS[1:]:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "2.545 ['0.weight', '0.bias']" in out  # the printed result the README promises
    assert "61,706" in out and (tmp_path / "lenet5.npz").exists()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_cmd = re.search(r"&& (python -m pytest[^\n`]*)", readme).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci]
