"""The shared training machinery, exercised through the DDPM family on tiny models."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from restore import training
from restore.errors import RestoreError
from restore.priors.ddpm import DDPMPrior, ddpm_loss, make_scheduler, make_unet


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Smooth blobs, so a few steps of training have something to learn.
    base = torch.rand(n, 1, 7, 7, generator=g)
    x = torch.nn.functional.interpolate(base, size=28, mode="bilinear", align_corners=False)
    return (x * 255).round().to(torch.uint8)


def _run(out, steps, resume=False, ema_decay=0.9, width=8):
    torch.manual_seed(0)
    scheduler = make_scheduler("linear", 50)
    return training.train(
        model=make_unet(28, 1, width), loss_fn=ddpm_loss(torch.cumprod(1 - scheduler.betas, 0)),
        data={"train": _data(), "val": _data(16, seed=1)}, config={"family": "ddpm"},
        options=training.TrainOptions(out=out, steps=steps, batch_size=8, lr=1e-3, ema_decay=ema_decay,
                                      checkpoint_every=3, val_every=3, resume=resume),
    )


def _weights(out):
    tensors, meta = training.load_checkpoint(out / "checkpoint")
    return tensors, meta


def test_resume_continues_exactly(tmp_path):
    _run(tmp_path / "straight", 6)
    _run(tmp_path / "split", 3)
    # As if killed after steps 4 and 5 were logged but before their checkpoint: resume drops them.
    with open(tmp_path / "split" / "log.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 9.0}\n{"step": 5, "loss": 9.0}\n')
    _run(tmp_path / "split", 6, resume=True)
    a, meta_a = _weights(tmp_path / "straight")
    b, meta_b = _weights(tmp_path / "split")
    assert meta_a["step"] == meta_b["step"] == 6
    # Batches, noise and optimiser state are all restored, so the weights agree bit for bit.
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The checkpoint folder holds only the latest tensors file.
    assert sorted(p.name for p in (tmp_path / "split" / "checkpoint").iterdir()) == ["checkpoint.json", "step-6.safetensors"]
    records = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] != 9.0 for r in records if "loss" in r)
    # Training time adds up over the two segments; run.json says how far the weights were trained.
    assert records[-2]["minutes"] >= records[2]["minutes"]
    run = json.loads((tmp_path / "split" / "run.json").read_text())
    assert run["steps_done"] == 6 and run["minutes_total"] >= 0


def test_refuses_to_overwrite_or_resume_nothing(tmp_path):
    _run(tmp_path / "run", 3)
    with pytest.raises(RestoreError, match="--resume"):
        _run(tmp_path / "run", 3)
    with pytest.raises(RestoreError, match="no checkpoint"):
        _run(tmp_path / "empty", 3, resume=True)
    with pytest.raises(RestoreError, match="different model"):
        _run(tmp_path / "run", 6, resume=True, width=16)


def test_training_lowers_the_validation_loss(tmp_path):
    scheduler = make_scheduler("linear", 50)
    loss_fn = ddpm_loss(torch.cumprod(1 - scheduler.betas, 0))
    torch.manual_seed(0)
    before = training.validation_loss(make_unet(28, 1, 8), loss_fn, _data(16, seed=1), 8, 0, "cpu")
    _run(tmp_path / "run", 30, ema_decay=0.0)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    after = [r["val_loss"] for r in log if "val_loss" in r][-1]
    # An untrained epsilon-predictor scores about 1 (the variance of eps); 30 Adam steps at lr 1e-3
    # measured 0.3-0.5 here. Requiring a 25% drop fails for a model that does not learn.
    assert after < 0.75 * before, (before, after)


@pytest.mark.parametrize("native, warned", [(False, True), (True, False), (None, False)])
def test_bf16_on_a_cpu_without_it_is_warned_about(monkeypatch, capsys, tmp_path, native, warned):
    from restore import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    torch.manual_seed(0)
    training.train(model=make_unet(28, 1, 8), loss_fn=ddpm_loss(torch.cumprod(1 - make_scheduler("linear", 50).betas, 0)),
                   data={"train": _data(16)}, config={"family": "ddpm"},
                   options=training.TrainOptions(out=tmp_path / "run", steps=1, batch_size=4, precision="bf16",
                                                 device="cpu", sample_every=100))
    err = capsys.readouterr()
    assert ("without bfloat16 instructions" in err.out + err.err) == warned


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from restore import runtime

    real_open = builtins.open
    for text, expected in [("processor : 0\nflags : fpu sse2 avx2 fma\n", False),
                           ("flags\t\t: fpu avx512f avx512_bf16\n", True), ("Features : fp asimd bf16\n", True),
                           ("processor : 0\n", None)]:
        (tmp_path / "cpuinfo").write_text(text)
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(tmp_path / "cpuinfo" if path == "/proc/cpuinfo"
                                                                             else path, *a, **k))
        assert runtime.native_bf16() is expected, text
    monkeypatch.setattr(builtins, "open", real_open)


def test_focus_draws_its_share_of_low_noise_timesteps():
    """--focus-sigma: the given share of a training batch among the timesteps of noise level <= sigma (on [0, 1]
    images), the rest uniform; validation (step None) stays uniform on 1..T."""
    from types import SimpleNamespace

    from restore.priors.ddpm import focus_timesteps

    alpha_bar = torch.cumprod(1 - make_scheduler("linear", 1000).betas, 0)
    focus = focus_timesteps(alpha_bar, 0.3)
    level = ((1 - alpha_bar) / alpha_bar).sqrt() / 2
    assert level[focus - 1] <= 0.3 < level[focus] and 150 < focus < 200  # 17% of the linear schedule
    seen = []

    def net(x_t, t):
        seen.append(t)
        return SimpleNamespace(sample=torch.zeros_like(x_t))

    x, g = torch.rand(4000, 1, 2, 2), torch.Generator().manual_seed(0)
    ddpm_loss(alpha_bar, 0.3, 0.75)(net, x, g, step=1)
    ddpm_loss(alpha_bar, 0.3, 0.75)(net, x, g, step=None)
    low_train, low_val = [(t < focus).float().mean().item() for t in seen]
    # Expected 0.75 + 0.25 * focus / 1000 = 0.79 and focus / 1000 = 0.17; 4000 draws: sd <= 0.007.
    assert abs(low_train - (0.75 + 0.25 * focus / 1000)) < 0.03 and abs(low_val - focus / 1000) < 0.03


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_hold_identical_weights(tmp_path, mnist_available):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "restore.cli", "train", "ddpm", "--data", "mnist", "--out", str(out), "--width", "8", "--steps", "3",
           "--batch-size", "8", "--checkpoint-every", "3", "--sample-every", "3", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["summary"]["ranks_identical"] is True
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    # Only rank 0 wrote: one line per step plus the summary.
    assert len(log) == 4
    # The run folder is a diffusers DDPM folder: diffusers' own pipeline loads and samples it.
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(out, use_safetensors=True)
    images = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert tuple(torch.as_tensor(images).shape[-2:]) in ((28, 28), (28, 1))
    assert DDPMPrior.from_pretrained(out).num_timesteps == 1000
    assert (out / "samples" / "step-3.png").exists()


def test_flip_mirrors_about_half_the_batch():
    images = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    images[..., 0] = 255  # a bright left column
    x = training._batch(images, 400, torch.Generator().manual_seed(0), flip=True)
    left, right = x[:, 0, :, 0].mean(1), x[:, 0, :, -1].mean(1)
    assert torch.equal(left + right, torch.ones(400))  # each image is the original or its mirror
    assert 150 < int(right.sum()) < 250  # about half are mirrored (binomial 400, 1/2: sd 10)
    plain = training._batch(images, 400, torch.Generator().manual_seed(0))
    assert plain[:, 0, :, 0].eq(1).all()


def test_batches_and_noise_for_a_device_come_from_the_same_draws(monkeypatch):
    """On an accelerator the patches are made floats, flipped and turned there, and eps is drawn there from a
    generator seeded by the CPU generator (3 M normals took 33 ms on a CPU core): the draws must not depend on
    where they land, and a seed must still fix the batch. Checked on the CPU, whose path the others share."""
    from restore.data import PatchSet

    images = [torch.randint(0, 256, (3, 40 + i, 50), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
              for i in range(3)]
    patches = PatchSet(images, 16)
    a = patches.batch(64, torch.Generator().manual_seed(1))
    b = training._batch(patches, 64, torch.Generator().manual_seed(1), device=torch.device("cpu"))
    assert torch.equal(a, b) and a.shape == (64, 3, 16, 16)
    crops = patches.crops(64, torch.Generator().manual_seed(1)).float() / 255  # the same crops, unturned
    assert torch.equal(torch.sort(a.flatten(1), dim=1)[0], torch.sort(crops.flatten(1), dim=1)[0])
    # eps: from the CPU generator on the CPU (as before); elsewhere from a generator there, seeded by it.
    cpu = torch.device("cpu")
    assert torch.equal(training.randn_on((4, 3), torch.Generator().manual_seed(5), cpu),
                       torch.randn((4, 3), generator=torch.Generator().manual_seed(5)))
    e1, e2 = (training._randn_from_seed((4, 3), 7, cpu) for _ in range(2))
    assert torch.equal(e1, e2) and e1.device == cpu and not torch.equal(e1, training._randn_from_seed((4, 3), 8, cpu))


def test_patches_gathered_on_a_device_equal_the_cut_and_turned_ones():
    """Off the CPU, a batch of patches is one gather from a copy of the images on the device, cutting and
    turning at once; it must give exactly the patches that the CPU cuts one by one and turns (checked by
    gathering on the CPU), with and without the turns, for gray and colour images of several sizes."""
    from restore.data import PatchSet

    for channels in (1, 3):
        images = [torch.randint(0, 256, (channels, 30 + 7 * i, 45 - 4 * i), dtype=torch.uint8,
                                generator=torch.Generator().manual_seed(i)) for i in range(4)]
        for augment in (True, False):
            patches = PatchSet(images, 12, augment=augment)
            for seed in range(3):
                a = patches.batch(50, torch.Generator().manual_seed(seed))
                b = patches.gathered(50, torch.Generator().manual_seed(seed), "cpu")
                assert b.dtype == torch.uint8 and torch.equal(a, b.float() / 255), (channels, augment, seed)


def test_losses_read_in_groups_log_and_train_as_when_read_at_each_step(monkeypatch, tmp_path):
    """On an accelerator the loss of each step is read back every few steps (a read waits for the device);
    the log must still get every step's record, written before any checkpoint of it, and the weights must
    not change. Run on the CPU with the grouped reading forced."""
    _run(tmp_path / "each", 7)
    monkeypatch.setattr(training, "_read_every", lambda device: 2)  # writes after 2 steps, at checkpoints (3) and the end
    _run(tmp_path / "grouped", 7)
    logs = [[{k: v for k, v in r.items() if k != "minutes"} for r in map(json.loads, (tmp_path / run / "log.jsonl")
             .read_text().splitlines()) if "step" in r] for run in ("each", "grouped")]  # not the summary
    assert logs[0] == logs[1] and [r["step"] for r in logs[1]] == list(range(1, 8))
    assert all(isinstance(r["loss"], float) for r in logs[1]) and "val_loss" in logs[1][2]
    a, b = _weights(tmp_path / "each")[0], _weights(tmp_path / "grouped")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A resume from the checkpoint of step 3 continues exactly too.
    _run(tmp_path / "split", 3)
    _run(tmp_path / "split", 7, resume=True)
    c = _weights(tmp_path / "split")[0]
    assert all(torch.equal(a[k], c[k]) for k in a)
    steps = [json.loads(line).get("step") for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [s for s in steps if s is not None][:7] == list(range(1, 8))


def test_resume_of_a_checkpoint_without_minutes_takes_them_from_the_log(tmp_path):
    _run(tmp_path / "run", 3)
    index = tmp_path / "run" / "checkpoint" / "checkpoint.json"
    meta = json.loads(index.read_text())
    del meta["minutes"]  # as written before checkpoints recorded the training time
    index.write_text(json.dumps(meta))
    log = tmp_path / "run" / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    records[2]["minutes"] = 5.0  # step 3
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    _run(tmp_path / "run", 4, resume=True)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["minutes_total"] >= 5.0


def test_warmup_ramps_the_rate_and_a_non_finite_gradient_skips_its_step(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)

    def loss_fn(net, x, g, step):
        out = net(x.flatten(1)[:, :4]).square().mean()
        return out * float("inf") if step == 2 else out  # step 2's gradient is inf * 0 or inf: not finite

    before = {k: v.clone() for k, v in model.state_dict().items()}
    training.train(model=model, loss_fn=loss_fn, data={"train": _data(16)}, config={"family": "t"},
                   options=training.TrainOptions(out=tmp_path / "r", steps=4, batch_size=4, lr=1e-2, ema_decay=0.0,
                                                 checkpoint_every=100), warmup=4, grad_clip=1.0)
    records = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert [r.get("skipped", 0) for r in records if "step" in r] == [0, 0, 1, 1]
    tensors, _ = training.load_checkpoint(tmp_path / "r" / "checkpoint")
    # Three steps were taken (warm-up rates 1/4, 2/4 and 4/4 of lr): the weights moved and stayed finite.
    for k, v in before.items():
        assert torch.isfinite(tensors[f"model.{k}"]).all() and not torch.equal(tensors[f"model.{k}"], v)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["warmup"] == 4
    # Adam's first step moves every weight by exactly its rate: lr / warmup at step 1.
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    training.train(model=model, loss_fn=loss_fn, data={"train": _data(16)}, config={"family": "t"},
                   options=training.TrainOptions(out=tmp_path / "one", steps=1, batch_size=4, lr=1e-2, ema_decay=0.0,
                                                 checkpoint_every=100), warmup=4)
    tensors, _ = training.load_checkpoint(tmp_path / "one" / "checkpoint")
    for k, v in before.items():
        assert torch.allclose((tensors[f"model.{k}"] - v).abs(), torch.full_like(v, 2.5e-3), rtol=1e-3)


def test_lr_decay_cools_the_rate_down_to_zero_at_the_run_end(tmp_path):
    # Warm-up, then constant, then a linear fall over the last `decay` steps; 0 would be the step after the end.
    rates = [training.learning_rate(s, 1.0, 10, warmup=2, decay=4) for s in range(10)]
    assert rates == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    assert [training.learning_rate(s, 2.0, 5) for s in range(5)] == [2.0] * 5
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_fn(net, x, g, step):
        return net(x.flatten(1)[:, :4]).square().mean()

    def run(out, steps, decay, resume=False):
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 1)
        training.train(model=m, loss_fn=loss_fn, data={"train": _data(16)}, config={"family": "t"},
                       options=training.TrainOptions(out=out, steps=steps, batch_size=4, lr=1e-2, lr_decay=decay,
                                                     ema_decay=0.0, checkpoint_every=1, resume=resume))
        return [r for line in (out / "log.jsonl").read_text().splitlines() if "step" in (r := json.loads(line))]

    records = run(tmp_path / "r", 3, 3)
    assert [r["lr"] for r in records] == pytest.approx([1e-2, 2e-2 / 3, 1e-2 / 3])
    assert json.loads((tmp_path / "r" / "run.json").read_text())["lr_decay"] == 3
    # The rates are Adam's: with a decay over the whole run its first step moves every weight by exactly lr.
    run(tmp_path / "one", 1, 1)
    tensors, _ = training.load_checkpoint(tmp_path / "one" / "checkpoint")
    for k, v in before.items():
        assert torch.allclose((tensors[f"model.{k}"] - v).abs(), torch.full_like(v, 1e-2), rtol=1e-3)
    # A resumed run with a larger --steps cools down at its new end.
    records = run(tmp_path / "one", 4, 3, resume=True)
    assert [r["lr"] for r in records] == pytest.approx([1e-2, 1e-2, 2e-2 / 3, 1e-2 / 3])
    with pytest.raises(RestoreError, match="--lr-decay"):
        training.train(model=torch.nn.Linear(4, 1), loss_fn=loss_fn, data={"train": _data(16)}, config={"family": "t"},
                       options=training.TrainOptions(out=tmp_path / "bad", steps=2, lr_decay=3))


def test_sigterm_during_training_checkpoints_exports_and_resumes(tmp_path):
    """A SIGTERM (or Ctrl-C) stops a run after its step with a checkpoint and the exported model; --resume goes on."""
    import subprocess
    import sys
    import time

    data = tmp_path / "photos"
    data.mkdir()
    from PIL import Image
    import numpy as np

    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 24), dtype=np.uint8)).save(data / f"{i}.png")
    cmd = [sys.executable, "-m", "restore.cli", "train", "ddpm", "--data", str(data), "--patch", "16", "--width", "8",
           "--timesteps", "10", "--batch-size", "2", "--steps", "100000", "--checkpoint-every", "100000",
           "--out", str(tmp_path / "run")]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.terminate()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM (continue with --resume)" in out and "Traceback" not in err
    step = __import__("json").loads((tmp_path / "run" / "checkpoint" / "checkpoint.json").read_text())["step"]
    assert step >= 3 and (tmp_path / "run" / "unet").is_dir()
    resumed = subprocess.run(cmd[:-6] + ["--steps", str(step + 2), "--checkpoint-every", "100000", "--out",
                                         str(tmp_path / "run"), "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0 and f"step {step + 2}, finished" in resumed.stdout, resumed.stderr


def test_the_ema_update_moves_each_weight_by_one_minus_decay_and_copies_buffers():
    torch.manual_seed(0)
    model, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.normal_(), model.bias.normal_(), model.running_mean.normal_()
    before = [p.detach().clone() for p in ema.parameters()]
    training._update_ema(ema, model, 0.9)
    for b, p_ema, p in zip(before, ema.parameters(), model.parameters()):
        assert torch.allclose(p_ema, 0.9 * b + 0.1 * p, atol=1e-6)
    assert torch.equal(ema.running_mean, model.running_mean)
