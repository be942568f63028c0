"""Checkpoints: round trip, atomic replace, and every kind of damaged file."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from fastconv import checkpoint


class Model:
    """A stand-in module: state_dict / load_state_dict over two arrays."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.state = OrderedDict(
            [
                ("conv.weight", rng.standard_normal((2, 1, 3, 3)).astype(np.float32)),
                ("bn.num_batches_tracked", np.array(7, np.int64)),
            ]
        )
        self.loads = 0

    def state_dict(self):
        return OrderedDict((k, v.copy()) for k, v in self.state.items())

    def load_state_dict(self, state):
        self.loads += 1
        for k in self.state:
            self.state[k] = np.asarray(state[k]).astype(self.state[k].dtype)


def test_round_trip_with_meta(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, Model(1), meta={"epoch": 3, "model": "lenet5"})
    state, meta = checkpoint.load(path)
    assert meta == {"epoch": 3, "model": "lenet5"}
    assert list(state) == ["conv.weight", "bn.num_batches_tracked"]
    target = Model(2)
    assert checkpoint.load_into(target, path) == meta
    for k, v in Model(1).state.items():
        np.testing.assert_array_equal(target.state[k], v)
        assert target.state[k].dtype == v.dtype
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind


def test_save_replaces_atomically_and_cleans_up_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, Model(1))
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, Model(2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_save_rejects_non_numeric_and_reserved_keys(tmp_path):
    with pytest.raises(TypeError, match="numeric arrays only"):
        checkpoint.save(tmp_path / "a.npz", {"w": np.array(["x"])})
    with pytest.raises(ValueError, match="reserved"):
        checkpoint.save(tmp_path / "a.npz", {"__meta__": np.zeros(2)})
    assert os.listdir(tmp_path) == []


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    checkpoint.save(path, Model(1), meta={"epoch": 1})
    return path


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused_and_model_untouched(good, tmp_path, keep):
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(raw[: int(len(raw) * keep)])
    model = Model(2)
    before = model.state_dict()
    with pytest.raises(ValueError, match="bad.npz"):
        checkpoint.load_into(model, bad)
    assert model.loads == 0
    for k in before:
        np.testing.assert_array_equal(model.state[k], before[k])


def test_flipped_byte_is_caught_by_crc(good, tmp_path):
    raw = bytearray(good.read_bytes())
    offset = raw.index(b"\x93NUMPY") + 200  # inside the first array's data
    raw[offset] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="unreadable"):
        checkpoint.load(bad)


def test_pickles_and_other_files_are_refused(tmp_path):
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"conv.weight": np.zeros(3)}))
    with pytest.raises(ValueError, match="pickled"):
        checkpoint.load(pkl)
    obj = tmp_path / "obj.npz"
    np.savez(obj, w=np.array([{"a": 1}], dtype=object), __meta__=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(ValueError, match="unreadable"):
        checkpoint.load(obj)
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="not a checkpoint archive"):
        checkpoint.load(npy)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(ValueError, match="not written by fastconv"):
        checkpoint.load(plain)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")


def test_mismatched_keys_and_shapes_never_half_load(tmp_path):
    path = tmp_path / "ck.npz"
    state = Model(1).state_dict()
    checkpoint.save(path, {"conv.weight": state["conv.weight"]})
    model = Model(2)
    with pytest.raises(ValueError, match=r"missing keys \['bn.num_batches_tracked'\]"):
        checkpoint.load_into(model, path)
    checkpoint.save(path, {**state, "conv.weight": np.zeros((3, 1, 3, 3), np.float32)})
    with pytest.raises(
        ValueError, match=r"'conv.weight' has shape \(3, 1, 3, 3\), the model expects \(2, 1, 3, 3\)"
    ):
        checkpoint.load_into(model, path)
    assert model.loads == 0
