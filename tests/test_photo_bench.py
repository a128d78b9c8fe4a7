"""The natural-image benchmark: measurements, the 8-bit protocol, cached per-measurement cells, the table."""

from __future__ import annotations

import json

import pytest
import torch

from restore import photo_bench
from restore.errors import RestoreError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_setting_has_its_images_and_a_seeded_measurement():
    settings = {s.name: s for s in photo_bench.settings()}
    assert {"denoise/bsd68/sigma25", "deblur/set12/sigma2.55", "superres/cbsd68/x4", "inpaint/cbsd68/random80"} <= set(settings)
    s = settings["superres/set12/x4"]
    images, names = photo_bench.test_images(s.data, s.modcrop)
    assert len(images) == 12 and all(x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0 for x in images)
    op, y = photo_bench.measurement(s, images[0], 0)
    assert torch.equal(y, (y * 255).round() / 255)  # the low-resolution image is 8-bit, as the protocol's
    _, again = photo_bench.measurement(s, images[0], 0)
    assert torch.equal(y, again)
    deblur = settings["deblur/set12/sigma7.65"]
    kernels = {tuple(deblur.operator((1, 64, 64), item).kernel.shape) for item in range(8)}
    assert len(kernels) > 1  # items 0-7 of an image are the 8 Levin kernels
    with pytest.raises(RestoreError, match="training set"):
        photo_bench.test_images("train400")


def test_cells_are_cached_per_measurement_and_summarised(tmp_path, monkeypatch):
    cells = photo_bench.run(out=tmp_path, setting_names=["denoise/set12/sigma25"], solvers=["pinv", "wiener"],
                            log=lambda text: None)
    rows = {r["method"]: r for r in photo_bench.summary(cells)}
    assert rows["pinv"]["n"] == rows["pinv"]["of"] == 12
    assert 20.0 < rows["pinv"]["psnr"] < 20.5  # the noisy image itself: 20.17 dB at sigma 25
    assert rows["wiener"]["psnr"] > rows["pinv"]["psnr"]
    lines = (tmp_path / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 24 and {"setting", "method", "item", "image", "psnr", "ssim", "seconds", "machine", "threads"} <= set(json.loads(lines[0]))
    # A rerun computes nothing (scoring a new cell would raise).
    monkeypatch.setattr(photo_bench, "score", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    photo_bench.run(out=tmp_path, setting_names=["denoise/set12/sigma25"], solvers=["wiener"], log=lambda text: None)
    table = photo_bench.markdown(photo_bench.summary(photo_bench.Cells(tmp_path / "cells.jsonl")))
    assert "| denoise/set12/sigma25 | wiener | - | **" in table and "BM3D 29.97" in table


def test_a_row_counts_only_the_cells_of_its_newest_settings(tmp_path):
    """When a method's settings change (a new default, a retrained prior) and only some of its cells are
    computed again, the cells of the old settings leave its row instead of being averaged with the new."""
    cells = photo_bench.Cells(tmp_path / "cells.jsonl")
    for item in range(4):
        cells.add({"setting": "denoise/bsd68/sigma25", "method": "m", "item": item, "psnr": 28.0, "ssim": 0.8,
                   "seconds": 1.0, "settings": {"weights": "exact"}})
    cells.add({"setting": "denoise/bsd68/sigma25", "method": "m", "item": 1, "psnr": 29.0, "ssim": 0.8,
               "seconds": 1.0, "settings": {"weights": "paper", "prior_steps": 22921}})
    for again in (cells, photo_bench.Cells(tmp_path / "cells.jsonl")):  # in memory, and read back
        (row,) = [r for r in photo_bench.summary(again) if r["method"] == "m"]
        assert row["n"] == 1 and row["psnr"] == 29.0 and row["prior_steps"] == 22921
    # The table says which weights a learned row ran with.
    assert "| denoise/bsd68/sigma25 | m | 22,921 | 29.00 |" in photo_bench.markdown(photo_bench.summary(cells))


def test_a_learned_methods_overrides_reach_its_solver_and_name_its_row(tmp_path, monkeypatch):
    asked = []

    def fake_method(solver, prior=None, steps=None, shape=None, overrides=None, patches=None):
        asked.append((solver, prior, steps, overrides))
        return f"{prior} + {solver} {steps}", lambda y, op: y, {"steps": steps, **(overrides or {})}

    monkeypatch.setattr(photo_bench, "method", fake_method)
    photo_bench.run(out=tmp_path, setting_names=["denoise/set12/sigma25"], log=lambda text: None,
                    learned=[("p", "dpir", 16, {"sigma_max": 0.3}), ("p", "dpir", 8)])
    assert asked == [("dpir", "p", 16, {"sigma_max": 0.3}), ("dpir", "p", 8, {})]
    methods = {json.loads(line)["method"] for line in (tmp_path / "cells.jsonl").read_text().splitlines()}
    assert methods == {"p + dpir 16 sigma_max=0.3", "p + dpir 8"}


def _natural_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "natural.py"
    spec = importlib.util.spec_from_file_location("natural_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


@pytest.mark.parametrize("text, expected", [
    ("ddpm:tweedie", ("ddpm", "tweedie", None, {})),
    ("ddpm-photo-rgb:dpir:24:views=8", ("ddpm-photo-rgb", "dpir", 24, {"views": 8})),
    ("ddpm:dpir:16:sigma_max=0.3,init=tv", ("ddpm", "dpir", 16, {"sigma_max": 0.3, "init": "tv"})),
    ("gmm:epll:betas=[1,2.5,4],weights=paper", ("gmm", "epll", None, {"betas": [1, 2.5, 4], "weights": "paper"})),
    ("ddpm:dpir:lam=.5:8", ("ddpm", "dpir", 8, {"lam": 0.5})),
    ("ddpm:dps:100:zeta=-1", ("ddpm", "dps", 100, {"zeta": -1})),
])
def test_the_benchmarks_learned_methods_parse(text, expected):
    natural, _ = _natural_script()
    assert natural.learned_method(text) == expected


@pytest.mark.parametrize("text, message", [
    ("ddpm", "expected PRIOR:SOLVER"), (":dpir", "expected PRIOR:SOLVER"), ("ddpm:dpir:8:16", "one whole number"),
    ("ddpm:dpir:eight", "one whole number"), ("ddpm:dpir:lam=", "is not KEY=VALUE"),
    ("ddpm:dpir:sigma_max=0.3.1", "not a number or a JSON list"), ("gmm:epll:betas=[1,2", "not a number"),
])
def test_a_malformed_learned_method_is_named(text, message):
    natural, _ = _natural_script()
    with pytest.raises(ValueError, match=message):
        natural.learned_method(text)


def test_a_malformed_learned_method_on_the_command_line_is_one_line_and_exit_2():
    import subprocess
    import sys

    _, path = _natural_script()
    run = subprocess.run([sys.executable, str(path), "--learned", "ddpm:dpir:8:16"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "one whole number" in run.stderr.splitlines()[-1], run.stderr
    assert "Traceback" not in run.stderr


def test_the_benchmarks_frame_sizes_parse():
    """benchmarks/frame_size.py, which the scripts that take WIDTHxHEIGHT sizes share."""
    import argparse
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "frame_size.py"
    spec = importlib.util.spec_from_file_location("frame_size", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.frame_size("4000x3000") == (4000, 3000)  # width first, as the scripts print them
    assert module.frame_size("481X321") == (481, 321) and module.frame_size("512") == (512, 512)
    for bad in ("4000x", "x3000", "4000*3000", "-5", "1.5x2", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
            module.frame_size(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="at least 16"):
        module.at_least(16)("15x400")
    assert module.at_least(16)("16x400") == (16, 400)
