"""restore bench: cells, cache, tables and the HTML report (opened in headless Chromium when it is installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch

from restore import bench
from restore.errors import RestoreError


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist_available):
    out = tmp_path_factory.mktemp("bench") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm", "ddrm"], n=3, out=out,
                    steps=[5], samples=2)
    torch.set_num_threads(threads)
    return out


def test_every_compatible_method_gets_a_row_with_its_figures(report):
    rows = json.loads((report / "results.json").read_text())["rows"]
    methods = {r["method"] for r in rows}
    assert {"biharmonic", "tv", "gaussian + pigdm", "gaussian + ddrm"} <= methods
    assert "bicubic" not in methods and "wiener" not in methods  # they cannot handle a mask
    pigdm = next(r for r in rows if r["method"] == "gaussian + pigdm")
    assert pigdm["nfe"] == 5 and pigdm["samples"] == 2 and 0 <= pigdm["calibration"] <= 1
    assert 0 <= pigdm["digit_accuracy"] <= 1 and pigdm["n"] == 3
    assert "| inpaint-box |" in (report / "results.md").read_text()
    assert (report / "inpaint-box.png").is_file()


def test_the_report_opens_with_a_summary_and_human_headers(report):
    page = (report / "report.html").read_text()
    rows = json.loads((report / "results.json").read_text())["rows"]
    (best,) = bench.best_per_task(rows)
    assert best["best"]["psnr"] == max(r["psnr"] for r in rows)
    assert best["classical"]["method"] in ("biharmonic", "tv", "lasso", "pinv", "richardson-lucy")
    expected = ("(a classical method)" if best["best"] is best["classical"]
                else f"{best['margin']:+.2f} dB against the best classical method")
    assert "<h2>Summary</h2>" in page and expected in page
    assert "<th>PSNR (dB)</th>" in page and "<th>psnr</th>" not in page and 'class="best"' in page
    assert "10.000" not in page  # network evaluations and steps are whole numbers


def test_a_rerun_reads_every_cell_from_the_cache(report, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a cached cell was recomputed")

    monkeypatch.setattr(bench, "run_prior", fail)
    monkeypatch.setattr(bench, "run_classical", fail)
    before = (report / "results.json").read_text()
    bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm", "ddrm"], n=3,
                    out=report, steps=[5], samples=2)
    assert json.loads((report / "results.json").read_text())["rows"] == json.loads(before)["rows"]


def test_cells_are_keyed_on_the_data_and_the_prior_weights(report, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(report, out)
    computed = []
    run_classical, run_prior = bench.run_classical, bench.run_prior
    monkeypatch.setattr(bench, "run_classical", lambda *a, **k: computed.append(a[1]) or run_classical(*a, **k))
    monkeypatch.setattr(bench, "run_prior", lambda *a, **k: computed.append(a[2]) or run_prior(*a, **k))
    # Other images into the same folder: nothing is read from the MNIST cells.
    bench.run_bench(data="fashion-mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm"], n=3,
                    out=out, steps=[5], samples=2)
    assert "biharmonic" in computed and "pigdm" in computed
    # A refitted prior (other weights, the same name and no training steps) is not read either.
    computed.clear()
    from restore.priors import load_prior

    refitted = load_prior("gaussian")
    with torch.no_grad():
        refitted.mean.add_(0.01)
    import restore.priors as priors

    monkeypatch.setattr(priors, "load_prior", lambda name, **k: refitted)
    bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm"], n=3,
                    out=out, steps=[5], samples=2)
    assert computed == ["pigdm"]  # the classical cells, on the same images, still come from the cache


def test_a_cell_whose_solver_default_changed_is_recomputed(report, tmp_path, monkeypatch):
    import functools

    from restore.solvers import PRIOR_SOLVERS

    out = tmp_path / "out"
    shutil.copytree(report, out)
    changed = functools.partial(PRIOR_SOLVERS["ddrm"], eta=0.5)  # its signature shows the new default
    changed.__dict__.update({k: v for k, v in vars(PRIOR_SOLVERS["ddrm"]).items() if k != "__wrapped__"})
    monkeypatch.setitem(PRIOR_SOLVERS, "ddrm", changed)
    ran = []
    real = bench.run_prior
    monkeypatch.setattr(bench, "run_prior", lambda task, prior, solver, *a: ran.append(solver) or real(
        task, prior, solver, *a))
    rows = bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm", "ddrm"], n=3,
                           out=out, steps=[5], samples=2)["rows"]
    assert ran == ["ddrm"]  # pigdm's settings are unchanged: read back
    ddrm = next(r for r in rows if r["method"] == "gaussian + ddrm")
    assert ddrm["settings"]["eta"] == 0.5 and ddrm["settings"]["steps"] == 5


def test_a_second_table_reads_the_cells_of_the_first_from_a_shared_folder(report, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "run_prior", lambda *a: pytest.fail("a shared cell was recomputed"))
    monkeypatch.setattr(bench, "run_classical", lambda *a: pytest.fail("a shared cell was recomputed"))
    other = tmp_path / "other"
    other.mkdir()
    rows = bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm"], n=3, out=other,
                           steps=[5], samples=2, cells=report / "cells")["rows"]
    assert "gaussian + pigdm" in {r["method"] for r in rows} and not (other / "cells").exists()


def test_a_variant_is_its_own_row_with_its_settings_beside_the_default(report, monkeypatch):
    ran = []
    real = bench.run_prior
    monkeypatch.setattr(bench, "run_prior", lambda *a: ran.append(a[-1]) or real(*a))
    (report.parent / "variant").mkdir()
    rows = bench.run_bench(data="mnist", tasks=["inpaint-box"], priors=["gaussian"], solvers=["pigdm", "ddrm"], n=3,
                           out=report.parent / "variant", steps=[5], samples=2, cells=report / "cells",
                           variants={("gaussian", "inpaint-box", "pigdm"): [{"eta": 0.5}]})["rows"]
    assert ran == [{"eta": 0.5}]  # the default rows come from the cache; only the variant runs
    default = next(r for r in rows if r["method"] == "gaussian + pigdm")
    variant = next(r for r in rows if r["method"] == "gaussian + pigdm eta=0.5")
    assert variant["settings"]["eta"] == 0.5 and default["settings"]["eta"] == 1.0
    assert variant["psnr"] != default["psnr"] and variant["steps"] == 5
    assert not any("ddrm eta" in r["method"] for r in rows)  # only the named (prior, task, solver)


def _row(method, steps, psnr_per_image, seconds):
    return {"task": "inpaint-box", "method": method, "steps": steps, "psnr": sum(psnr_per_image) / len(psnr_per_image),
            "ssim": 0.5, "psnr_per_image": psnr_per_image, "seconds_per_image": seconds, "n": len(psnr_per_image)}


def test_the_paper_setting_is_compared_on_the_images_it_ran_on():
    reference = _row("ddpm + dps", 1000, [20.0, 22.0], 40.0)
    # On all 4 images ddnm's mean is 17.5 dB, below the reference's 21; on the first 2 it is 21.5.
    ddnm = _row("ddpm + ddnm", 50, [21.0, 22.0, 13.0, 14.0], 4.0)
    slow = _row("ddpm + pigdm", 100, [30.0, 30.0, 30.0, 30.0], 4.5)  # best, but more than a tenth of the time
    gaussian = _row("gaussian + ddnm", 50, [40.0, 40.0, 40.0, 40.0], 0.1)  # another prior: not a rival
    [found] = bench.paper_comparison([reference, ddnm, slow, gaussian])
    assert found["best"] == "ddpm + pigdm 100" and found["best_psnr"] == 30.0
    assert found["fast"] == "ddpm + ddnm 50" and found["fast_psnr"] == 21.5 and found["met"]
    # Paired differences 1.0 and 0.0: mean 0.5, standard error std(ddof=1) / sqrt(2) = 0.5, better on one.
    assert (found["fast_difference"], found["fast_difference_se"], found["fast_wins"]) == (0.5, 0.5, 1)
    assert "+0.50 +- 0.50 dB, better on 1 of 2" in bench.paper_table([found])
    ddnm["psnr_per_image"][1] = 20.0  # 20.5 on the first two: short of 21
    assert not bench.paper_comparison([reference, ddnm, slow])[0]["met"]
    assert "| no |" in bench.paper_table(bench.paper_comparison([reference, ddnm, slow]))
    assert "_psnr_m" not in ddnm  # the rows are left as they were


def test_the_bold_row_is_the_best_on_the_full_image_set():
    rows = [_row("ddpm + dps", 1000, [30.0, 30.0], 40.0), _row("ddpm + ddnm", 50, [21.0, 22.0, 13.0, 14.0], 4.0),
            _row("ddpm + pigdm", 50, [11.0, 12.0, 13.0, 14.0], 4.0)]
    lines = bench.markdown_table(rows).splitlines()
    assert [line for line in lines if "**" in line] == [next(line for line in lines if "ddnm" in line)]


def test_bad_requests_are_one_line_errors(tmp_path):
    with pytest.raises(RestoreError, match="unknown task"):
        bench.run_bench(data="mnist", tasks=["unblur"], priors=[], solvers=None, n=2, out=tmp_path / "o", steps=[5])
    with pytest.raises(RestoreError, match="unknown solver"):
        bench.run_bench(data="mnist", tasks=["denoise"], priors=[], solvers=["magic"], n=2, out=tmp_path / "o", steps=[5])


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("RESTORE_CI"):
            pytest.fail("Chromium is missing under CI (.ci/run installs Debian's chromium package)")
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    return path


def test_html_report_opens_in_chromium_without_console_errors(report, tmp_path):
    chromium = _chromium()
    url = (report / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<table>" in dom.stdout and "gaussian + pigdm" in dom.stdout and 'alt="inpaint-box grid"' in dom.stdout
    # The page has no scripts: any console message (a failed resource, a parse error) is a defect.
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    shot = tmp_path / "report.png"
    run = subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1200,1600", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, run.stderr[-2000:]
