"""Bundled digits, IDX reader, augmentation, seeded batching."""

import gzip

import numpy as np
import pytest

from fastconv import data


def test_digits_split_is_fixed_and_disjoint():
    x, y = data.load_digits("train")
    xt, yt = data.load_digits("test")
    assert x.shape == (1437, 1, 32, 32) and xt.shape == (360, 1, 32, 32)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    assert abs(float(x.mean())) < 1e-6 and abs(float(x.std()) - 1) < 1e-5
    # no test image is a train image (resized images compared exactly)
    train_rows = {r.tobytes() for r in x.reshape(len(x), -1)}
    assert sum(r.tobytes() in train_rows for r in xt.reshape(len(xt), -1)) < 5
    x2, y2 = data.load_digits("train")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_digits_are_sklearns():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    ref = sklearn_datasets.load_digits()
    x, y = data.load_digits("train", size=8, dtype=np.float64)
    xt, yt = data.load_digits("test", size=8, dtype=np.float64)
    assert np.bincount(np.concatenate([y, yt])).tolist() == np.bincount(ref.target).tolist()
    # at size 8 the resize is the identity, so the images are sklearn's up to normalisation
    raw = np.concatenate([x, xt])[:, 0]
    raw = np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 16)
    assert {r.tobytes() for r in raw.reshape(-1, 64)} == {r.tobytes() for r in ref.data.astype(np.float64)}


def test_resize_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(0).random((3, 8, 8))
    ours = data.resize_bilinear(img, 32)
    theirs = torch.nn.functional.interpolate(
        torch.from_numpy(img)[:, None], size=(32, 32), mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_digits_bad_arguments():
    with pytest.raises(ValueError, match="split must be"):
        data.load_digits("valid")
    with pytest.raises(ValueError, match="size must be"):
        data.load_digits(size=0)


def write_idx(path, array, code=0x08, opener=open):
    with opener(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(np.array(array.shape, ">u4").tobytes())
        f.write(array.astype(array.dtype.newbyteorder(">")).tobytes())


@pytest.mark.parametrize(
    "code, dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32), (0x0E, np.float64)]
)
def test_read_idx_round_trip(tmp_path, code, dtype):
    a = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    write_idx(tmp_path / "a.idx", a, code)
    b = data.read_idx(tmp_path / "a.idx")
    assert b.dtype == dtype and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_read_idx_errors(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.idx", a)
    raw = (tmp_path / "a.idx").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"\(24 bytes\), file has 23 bytes"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "bad").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "hdr").write_bytes(raw[:6])
    with pytest.raises(ValueError, match="truncated IDX header"):
        data.read_idx(tmp_path / "hdr")


def test_load_mnist_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("t10k", 3)):
        write_idx(
            tmp_path / f"{split}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28)).astype(np.uint8),
            opener=gzip.open,
        )
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
    x, y = data.load_mnist(tmp_path, "train")
    xt, yt = data.load_mnist(tmp_path, "test")
    assert x.shape == (5, 1, 32, 32) and xt.shape == (3, 1, 32, 32) and x.dtype == np.float32
    assert y.tolist() == [0, 1, 2, 3, 4] and yt.dtype == np.int64
    assert np.all(x[:, :, :2] == x[0, 0, 0, 0])  # the 2-pixel zero border
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_mnist(tmp_path / "nope")
    with pytest.raises(ValueError, match="smaller than the images"):
        data.load_mnist(tmp_path, size=20)


def test_augmentations_are_seeded_and_shape_preserving():
    x = np.random.default_rng(1).standard_normal((6, 2, 8, 8)).astype(np.float32)
    x0 = x.copy()
    for fn in (
        lambda r: data.random_crop(x, 8, r, padding=2),
        lambda r: data.random_horizontal_flip(x, r),
        lambda r: data.random_translate(x, 2, r),
    ):
        a, b = fn(np.random.default_rng(5)), fn(np.random.default_rng(5))
        assert a.shape == x.shape and a.dtype == x.dtype
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, x)
    np.testing.assert_array_equal(x, x0)  # never modified


def test_augmentations_by_hand():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    flipped = data.random_horizontal_flip(x, np.random.default_rng(0), p=1.0)
    np.testing.assert_array_equal(flipped, x[..., ::-1])
    assert data.random_crop(x, 2, np.random.default_rng(0)).shape == (1, 1, 2, 2)
    crop = data.random_crop(x, 4, np.random.default_rng(0), padding=0)
    np.testing.assert_array_equal(crop, x)
    # a translated image is the original shifted, with the minimum filled in
    t = data.random_translate(x, 1, np.random.default_rng(3))[0, 0]
    found = [
        (dy, dx)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if np.array_equal(t, np.roll(x[0, 0], (dy, dx), (0, 1)) * _mask(dy, dx))
    ]
    assert len(found) == 1
    with pytest.raises(ValueError, match="must fit"):
        data.random_crop(x, 9, np.random.default_rng(0), padding=2)
    with pytest.raises(ValueError, match=r"x must be a NumPy array \(N, C, H, W\)"):
        data.random_translate(x[0], 1, np.random.default_rng(0))


def _mask(dy, dx):
    m = np.ones((4, 4))
    if dy > 0:
        m[:dy] = 0
    if dy < 0:
        m[dy:] = 0
    if dx > 0:
        m[:, :dx] = 0
    if dx < 0:
        m[:, dx:] = 0
    return m


def test_loader_is_seeded_and_covers_everything():
    x, y = np.arange(10.0)[:, None], np.arange(10)
    first = [yb.tolist() for _, yb in data.DataLoader(x, y, 4, seed=3)]
    second = [yb.tolist() for _, yb in data.DataLoader(x, y, 4, seed=3)]
    assert first == second and [len(b) for b in first] == [4, 4, 2]
    assert sorted(sum(first, [])) == list(range(10))
    loader = data.DataLoader(x, y, 4, seed=3, drop_last=True)
    assert len(loader) == 2
    epochs = [[yb.tolist() for _, yb in loader] for _ in range(2)]
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    plain = data.DataLoader(x, y, 3, shuffle=False, transform=lambda xb, rng: xb * 2)
    xb, yb = next(iter(plain))
    assert yb.tolist() == [0, 1, 2] and xb[:, 0].tolist() == [0, 2, 4]
    with pytest.raises(ValueError, match="batch_size must be"):
        data.DataLoader(x, y, 0)
    with pytest.raises(ValueError, match="same length"):
        data.DataLoader(x, y[:3])
