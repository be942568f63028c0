"""``python -m fastconv train``: train LeNet-5 on the bundled digits (or an MNIST-format folder).

The defaults need no download and finish in a few minutes on two cores. The run shows a
progress bar per epoch, prints ``test accuracy: 0.xxxx``, and writes to ``--out``:
``model.npz`` (checkpoint, atomic), ``history.json`` (per-step loss, per-epoch metrics),
``curves.png`` (loss and accuracy) and ``filters.png`` (the first layer's filters). The same
``--seed`` gives the same loss curve. ``--device cuda`` trains on the GPU: the model moves
there once, each batch is copied there once per step, and only the (N, classes) logits come
back (the loss is computed from them on the host, as every fastconv loss is, and its gradient
copied back); without a GPU the command says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from . import checkpoint, data, models, nn, optim

TRAINABLE_MODELS = ("lenet5", "resnet18", "vgg11")  # those that take 32x32 inputs


def build_parser() -> argparse.ArgumentParser:
    """The command line options of ``python -m fastconv train``."""
    p = argparse.ArgumentParser(
        prog="python -m fastconv train",
        description="Train a network (LeNet-5 by default) on the bundled digits or an MNIST-format folder.",
    )
    p.add_argument("--model", choices=TRAINABLE_MODELS, default="lenet5", help="network (default: lenet5)")
    p.add_argument(
        "--dataset",
        default="digits",
        help="'digits' (bundled, 1,797 8x8 digits resized to 32x32) or a folder with the "
        "four MNIST IDX files (default: digits)",
    )
    p.add_argument("--epochs", type=int, default=15, help="passes over the training set (default: 15)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument(
        "--lr", type=float, default=0.05, help="SGD learning rate, cosine-annealed (default: 0.05)"
    )
    p.add_argument(
        "--seed", type=int, default=0, help="initialisation, shuffling and augmentation (default: 0)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default: cpu)")
    p.add_argument("--out", default="runs/lenet5", help="output folder (default: runs/lenet5)")
    p.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # batches per epoch (tests)
    return p


def load_dataset(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` for ``"digits"`` or an IDX folder.

    Shapes:
        returns: x (N, 1, 32, 32) float32, y (N,) int64
    """
    if name == "digits":
        return data.load_digits("train"), data.load_digits("test")
    return data.load_mnist(name, "train"), data.load_mnist(name, "test")


def evaluate(
    model, x: np.ndarray, y: np.ndarray, batch_size: int = 256, device: str = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(x, y)``, in evaluation mode.

    Shapes:
        x: (N, C, H, W); y: (N,) int64
        returns: (loss, accuracy) floats
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss = correct = 0.0
    for i in range(0, len(x), batch_size):
        logits = _to_cpu(model(_to(x[i : i + batch_size], device)))
        loss += criterion(logits, y[i : i + batch_size])
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
    model.train()
    return loss / len(x), correct / len(x)


def _to(a, device: str):
    return a if device == "cpu" else nn.module.move(a, device)


def _to_cpu(a) -> np.ndarray:
    return a if isinstance(a, np.ndarray) else nn.module.move(a, "cpu")


def train_step(
    model, opt, criterion, xb: np.ndarray, yb: np.ndarray, device: str = "cpu"
) -> tuple[float, int]:
    """One optimisation step on a batch: moved to ``device`` once, forward, backward, update
    (all on the device); only the loss and the logits for the accuracy come back.

    Shapes:
        xb: (N, C, H, W) NumPy; yb: (N,) int64
        returns: (mean loss, number of correct predictions)
    """
    logits = model(_to(xb, device))
    loss = criterion(logits, yb)
    opt.zero_grad()
    model.backward(criterion.backward())
    opt.step()
    return loss, int((_to_cpu(logits).argmax(1) == yb).sum())


def train(args: argparse.Namespace) -> tuple[nn.Module, dict]:
    """Run the training job described by ``args`` (see ``build_parser``): the trained model
    and its history (per-step loss, per-epoch train/test loss and accuracy, seconds)."""
    (x, y), (x_test, y_test) = load_dataset(args.dataset)
    num_classes = int(max(y.max(), y_test.max())) + 1
    model = models.MODELS[args.model](num_classes=num_classes, in_channels=x.shape[1], rng=args.seed)
    model.to(args.device)
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = optim.CosineAnnealingLR(opt, T_max=args.epochs)
    criterion = nn.CrossEntropyLoss()
    loader = data.DataLoader(
        x, y, args.batch_size, seed=args.seed, transform=lambda xb, rng: data.random_translate(xb, 2, rng)
    )
    history = {
        "step_loss": [],
        "train_loss": [],
        "train_acc": [],
        "test_loss": [],
        "test_acc": [],
        "epoch_seconds": [],
        "args": {k: v for k, v in vars(args).items() if k != "limit"},
    }
    from tqdm import tqdm

    for epoch in range(1, args.epochs + 1):
        start, seen, correct, total = time.perf_counter(), 0, 0, 0.0
        steps = len(loader) if args.limit is None else min(args.limit, len(loader))
        bar = tqdm(
            loader,
            total=steps,
            desc=f"epoch {epoch}/{args.epochs}",
            unit="batch",
            leave=True,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for k, (xb, yb) in enumerate(bar):
            if k == steps:
                break
            loss, hits = train_step(model, opt, criterion, xb, yb, args.device)
            seen += len(yb)
            total += loss * len(yb)
            correct += hits
            history["step_loss"].append(loss)
            bar.set_postfix(loss=f"{total / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        sched.step()
        test_loss, test_acc = evaluate(model, x_test, y_test, device=args.device)
        history["epoch_seconds"].append(time.perf_counter() - start)
        for key, value in (
            ("train_loss", total / seen),
            ("train_acc", correct / seen),
            ("test_loss", test_loss),
            ("test_acc", test_acc),
        ):
            history[key].append(value)
        print(
            f"epoch {epoch}: train loss {total / seen:.4f} acc {correct / seen:.4f}, "
            f"test loss {test_loss:.4f} acc {test_acc:.4f}, {history['epoch_seconds'][-1]:.1f} s",
            file=sys.stderr,
        )
    return model, history


def save_curves(history: dict, path: str) -> None:
    """Plot per-step training loss and per-epoch train/test accuracy into one PNG (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    steps = np.arange(1, len(history["step_loss"]) + 1)
    per_epoch = len(steps) / max(len(history["train_acc"]), 1)
    epochs = np.arange(1, len(history["train_acc"]) + 1)
    ax_loss.plot(steps / per_epoch, history["step_loss"], lw=0.7, label="train (per step)")
    ax_loss.plot(epochs, history["test_loss"], "o-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.plot(epochs, history["train_acc"], "o-", label="train")
    ax_acc.plot(epochs, history["test_acc"], "o-", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    _save_figure(fig, path)


def save_filters(weight: np.ndarray, path: str) -> None:
    """Draw first-layer filters as a grid of grey images (each scaled to its own range).

    Shapes:
        weight: (C_out, C_in, KH, KW); the first input channel is shown
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = weight.shape[0]
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(weight[i, 0], cmap="gray", interpolation="nearest")
            ax.set_title(str(i), fontsize=8)
    fig.suptitle(f"first-layer filters {tuple(weight.shape)}")
    _save_figure(fig, path)


def _save_figure(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    with checkpoint.atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _first_conv_weight(model) -> np.ndarray:
    return next(p.data for name, p in model.named_parameters() if p.data.ndim == 4)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fastconv train``; returns the exit status."""
    args = build_parser().parse_args(argv)
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            print(
                f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}", file=sys.stderr
            )
            return 2
    if not args.lr > 0:
        print(f"error: --lr must be > 0, got {args.lr}", file=sys.stderr)
        return 2
    if args.dataset != "digits" and not os.path.isdir(args.dataset):
        print(
            f"error: --dataset must be 'digits' or a folder of MNIST IDX files; {args.dataset!r} is neither",
            file=sys.stderr,
        )
        return 2
    if args.device == "cuda":
        try:
            _to(np.zeros(1, np.float32), "cuda")  # fails fast, before any work
        except (ImportError, RuntimeError, OSError) as err:
            print(f"error: --device cuda is not available here: {err}", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    model, history = train(args)
    print(f"test accuracy: {history['test_acc'][-1]:.4f}")
    print(f"time per epoch: {np.median(history['epoch_seconds']):.1f} s (median of {args.epochs})")
    model.to("cpu")
    meta = {"model": args.model, "epochs": args.epochs, "test_accuracy": history["test_acc"][-1]}
    ck = os.path.join(args.out, "model.npz")
    checkpoint.save(ck, model, meta=meta)
    with checkpoint.atomic_file(os.path.join(args.out, "history.json")) as f:
        f.write(json.dumps(history, indent=1).encode())
    written = [ck, os.path.join(args.out, "history.json")]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "matplotlib is not installed: skipping curves.png and filters.png "
            "(pip install matplotlib to get them)",
            file=sys.stderr,
        )
    else:
        save_curves(history, os.path.join(args.out, "curves.png"))
        save_filters(_first_conv_weight(model), os.path.join(args.out, "filters.png"))
        written += [os.path.join(args.out, "curves.png"), os.path.join(args.out, "filters.png")]
    print("wrote " + ", ".join(written))
    return 0
