"""The example scripts run as a user would run them (with the Gaussian prior and few steps, for speed)."""

import os
import subprocess
import sys
from pathlib import Path


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args, cwd):
    result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_classical_example(tmp_path, mnist_available):
    out = _run(EXAMPLES / "classical_restoration.py", cwd=tmp_path)
    assert "inpaint-box" in out and "biharmonic" in out


def test_diffusion_example_compares_two_solvers(tmp_path, mnist_available):
    out = _run(EXAMPLES / "diffusion_restoration.py", "--prior", "gaussian", "--steps", "10", cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("biharmonic") and "ddnm" in lines[1] and "pigdm" in lines[2]


def test_posterior_samples_example_writes_pictures(tmp_path, mnist_available):
    out = _run(EXAMPLES / "posterior_samples.py", "--prior", "gaussian", "--samples", "4", "--steps", "10",
               "--out", tmp_path, cwd=tmp_path)
    assert "true pixels inside the samples' 95% predictive interval" in out
    assert (tmp_path / "posterior_samples.png").exists() and (tmp_path / "posterior_std.png").exists()


def test_every_python_snippet_of_the_readme_runs(monkeypatch, capsys):
    """The README's ```python blocks, run as written from the repository root."""
    import re

    root = Path(__file__).resolve().parent.parent
    blocks = re.findall(r"```python\n(.*?)```", (root / "README.md").read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(root)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip()
