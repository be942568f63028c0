"""``python -m fastconv train``: a short smoke run, reproducibility, outputs, bad options."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fastconv import backends, checkpoint, models, train

TINY = ["--epochs", "1", "--limit", "2", "--batch-size", "16"]


def run(tmp_path, *extra):
    return train.main([*TINY, "--out", str(tmp_path), *extra])


def test_smoke_run_writes_everything(tmp_path, capsys):
    assert run(tmp_path) == 0
    out = capsys.readouterr()
    line = next(s for s in out.out.splitlines() if s.startswith("test accuracy: "))
    assert 0 <= float(line.split(": ")[1]) <= 1
    assert "epoch 1/1" in out.err  # the progress bar
    for name in ("model.npz", "history.json", "curves.png", "filters.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["step_loss"]) == 2 and len(history["test_acc"]) == 1
    model = models.lenet5(rng=1)
    meta = checkpoint.load_into(model, tmp_path / "model.npz")
    assert meta["model"] == "lenet5" and meta["test_accuracy"] == history["test_acc"][0]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_same_seed_same_loss_curve(tmp_path):
    curves = []
    for i, seed in enumerate((7, 7, 8)):
        assert run(tmp_path / str(i), "--seed", str(seed)) == 0
        curves.append(json.loads((tmp_path / str(i) / "history.json").read_text())["step_loss"])
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


def test_idx_dataset_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for split, n in (("train", 32), ("t10k", 8)):
        for kind, array in (
            ("images-idx3", rng.integers(0, 256, (n, 28, 28))),
            ("labels-idx1", np.arange(n) % 10),
        ):
            header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
            (folder / f"{split}-{kind}-ubyte").write_bytes(header + array.astype(np.uint8).tobytes())
    assert run(tmp_path / "out", "--dataset", str(folder)) == 0


def test_without_matplotlib_only_plots_are_skipped(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    assert run(tmp_path) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert (tmp_path / "model.npz").exists() and not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--device", "cuda"], "--device cuda is not available"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--dataset", "/no/such/folder"], "--dataset must be 'digits' or a folder"),
    ],
)
def test_bad_options_exit_cleanly(tmp_path, capsys, monkeypatch, argv, message):
    _without_cuda(monkeypatch)  # even where the CUDA tests switched this process to the simulator
    assert train.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def _without_cuda(monkeypatch) -> None:
    real_get = backends.get

    def get(device):
        if device == "cuda":
            raise ImportError("No module named 'numba.cuda'")
        return real_get(device)

    monkeypatch.setattr(backends, "get", get)


def test_cuda_installed_without_a_gpu_exits_cleanly(tmp_path, capsys, monkeypatch):
    def no_gpu(a):
        raise RuntimeError("CUDA requested but no GPU is available")

    real_get = backends.get
    monkeypatch.setattr(
        backends, "get", lambda d: SimpleNamespace(to_device=no_gpu) if d == "cuda" else real_get(d)
    )
    assert train.main(["--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--device cuda is not available here: CUDA requested but no GPU is available" in err
    assert not (tmp_path / "model.npz").exists()


def test_unknown_model_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["--model", "alexnet"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
