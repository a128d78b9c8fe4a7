"""A small MNIST digit classifier: the judge of sample quality and of restored digits' identity.

It is not a prior. It labels generated digits (how many are recognisable, and is every class
there?) and will supply features for Frechet and kernel distances. A LeNet-style CNN: two blocks of
two 3x3 convolutions and a max-pool (28 -> 14 -> 7), then a 128-unit feature layer. Trained with
Adam on the MNIST training split with random shifts of up to 2 pixels; the shipped weights live in
``restore/weights/mnist-classifier/`` (safetensors + JSON, written by
``benchmarks/ddpm_mnist.py --train-classifier``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .errors import RestoreError

#: The shipped classifier's folder.
DEFAULT_PATH = Path(__file__).parent / "weights" / "mnist-classifier"


class MNISTClassifier(nn.Module):
    """(B, 1, 28, 28) images in [0, 1] -> (B, 10) logits; ``features`` gives the 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the [0, 1] input on MNIST's mean and scale (0.1307, 0.3081).
        return self.body((x - 0.1307) / 0.3081)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def _shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Each image translated by a random integer offset in [-max_shift, max_shift]^2, zero-filled."""
    n = x.shape[0]
    padded = nn.functional.pad(x, (max_shift,) * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = dy[:, None] + torch.arange(28)[None]  # (n, 28)
    cols = dx[:, None] + torch.arange(28)[None]  # (n, 28)
    # Gather the 28x28 window of each padded image: (n, 28, 28) -> (n, 1, 28, 28).
    return padded[torch.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def train_classifier(*, epochs: int = 4, batch_size: int = 128, lr: float = 1e-3, seed: int = 0, root=None,
                     progress: bool = True) -> tuple[MNISTClassifier, dict]:
    """Train on the MNIST training split; returns the model (eval mode) and {test_accuracy, ...}."""
    from tqdm.auto import tqdm

    from .data import load_mnist

    train_x, train_y = load_mnist("train", root=root)
    test_x, test_y = load_mnist("test", root=root)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = MNISTClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = len(train_x) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    bar = tqdm(total=epochs * steps_per_epoch, desc="classifier", unit="step", disable=not progress or None)
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=g)
        model.train()
        for i in range(steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            x = _shift(train_x[idx].float() / 255, g)
            loss = nn.functional.cross_entropy(model(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            bar.update(1)
    bar.close()
    model.eval()
    accuracy = float((predict(model, test_x.float() / 255).argmax(1) == test_y).float().mean())
    return model, {"test_accuracy": accuracy, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                   "augmentation": "random shifts of up to 2 pixels", "parameters": sum(p.numel() for p in model.parameters())}


@torch.no_grad()
def predict(model: MNISTClassifier, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class probabilities (N, 10) for images (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).softmax(1) for i in range(0, len(x), batch_size)])


def save_classifier(model: MNISTClassifier, folder: str | Path, info: dict) -> None:
    """``model.safetensors`` and ``classifier.json`` (how it was trained and how well it does)."""
    from . import io

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    io.save_arrays(folder / "model.safetensors", model.state_dict())
    io.write_json(folder / "classifier.json", {"format": "restore.mnist-classifier", "version": 1, **info})


def load_classifier(folder: str | Path | None = None) -> MNISTClassifier:
    """The classifier saved in ``folder`` (default: the shipped one), in eval mode."""
    from . import io

    folder = Path(folder) if folder is not None else DEFAULT_PATH
    meta_path = folder / "classifier.json"
    if not meta_path.is_file():
        raise RestoreError(f"no MNIST classifier in '{folder}' (train one: python benchmarks/ddpm_mnist.py --train-classifier)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "restore.mnist-classifier":
        raise RestoreError(f"'{meta_path}' is not a restore MNIST classifier file")
    model = MNISTClassifier()
    model.load_state_dict(io.load_arrays(folder / "model.safetensors"))
    return model.eval()


def sample_figures(model: MNISTClassifier, x: torch.Tensor, confidence: float = 0.9) -> dict:
    """How digit-like samples x (N, 1, 28, 28) are: the fraction labelled with probability >= ``confidence``,
    the share of each predicted class, and the largest deviation of a share from 10%."""
    probs = predict(model, x)
    top, label = probs.max(1)
    confident = top >= confidence
    shares = torch.bincount(label, minlength=10).float() / len(x)
    return {
        "samples": len(x), "confident_fraction": float(confident.float().mean()),
        "class_shares": [round(float(s), 4) for s in shares], "max_class_deviation": float((shares - 0.1).abs().max()),
        "confident_class_shares": [round(float(s), 4) for s in
                                   torch.bincount(label[confident], minlength=10).float() / max(int(confident.sum()), 1)],
    }
