"""Optimizers and schedulers: hand-computed steps, PyTorch side by side, bad arguments."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastconv import optim


class P:
    """A stand-in Parameter: .data and .grad."""

    def __init__(self, data, grad=None):
        self.data = np.array(data, dtype=np.float64)
        self.grad = None if grad is None else np.array(grad, dtype=np.float64)


def run(opt_cls, grads, p0=(1.0, -2.0), **kw):
    p = P(p0)
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = np.array(g, dtype=np.float64)
        opt.step()
    return p.data


def test_sgd_plain_by_hand():
    assert run(optim.SGD, [[0.5, 1.0]], lr=0.1) == pytest.approx([0.95, -2.1], abs=1e-15)


def test_sgd_momentum_dampening_weight_decay_by_hand():
    # wd: g1 = 1 + 0.1*1 = 1.1; buf = 1.1; p = 1 - 0.5*1.1 = 0.45
    # g2 = 1 + 0.1*0.45 = 1.045; buf = 0.9*1.1 + 0.5*1.045 = 1.5125; p = 0.45 - 0.5*1.5125
    out = run(optim.SGD, [[1.0], [1.0]], p0=[1.0], lr=0.5, momentum=0.9, dampening=0.5, weight_decay=0.1)
    assert out == pytest.approx([0.45 - 0.5 * 1.5125], abs=1e-15)


def test_sgd_nesterov_by_hand():
    # buf1 = 2; step1 = 2 + 0.9*2 = 3.8; buf2 = 0.9*2 + 1 = 2.8; step2 = 1 + 0.9*2.8 = 3.52
    out = run(optim.SGD, [[2.0], [1.0]], p0=[0.0], lr=0.1, momentum=0.9, nesterov=True)
    assert out == pytest.approx([-0.1 * (3.8 + 3.52)], abs=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # m_hat = g, v_hat = g^2 at step 1, so the step is lr * g / (|g| + eps)
    out = run(optim.Adam, [[3.0, -0.5]], lr=0.01, eps=0.0)
    assert out == pytest.approx([1.0 - 0.01, -2.0 + 0.01], abs=1e-15)


def test_adam_two_steps_by_hand():
    b1, b2, lr, eps = 0.9, 0.999, 0.1, 1e-8
    m = v = 0.0
    p = 1.0
    for t, g in enumerate([1.0, -2.0], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p -= lr / (1 - b1**t) * m / (math.sqrt(v) / math.sqrt(1 - b2**t) + eps)
    assert run(optim.Adam, [[1.0], [-2.0]], p0=[1.0], lr=lr) == pytest.approx([p], rel=1e-14)


def test_adamw_decays_weights_not_gradients():
    # zero gradient: Adam's step is 0/eps = 0, only the decoupled decay acts
    out = run(optim.AdamW, [[0.0, 0.0]], lr=0.1, weight_decay=0.5)
    assert out == pytest.approx([0.95, -1.9], abs=1e-15)
    out = run(optim.Adam, [[0.0, 0.0]], lr=0.1, weight_decay=0.5, eps=0.0)
    assert out == pytest.approx([0.9, -1.9], abs=1e-12)  # L2: sign(wd * p) step


def test_none_grad_is_skipped_and_zero_grad_sets_none():
    p, q = P([1.0]), P([2.0], [1.0])
    opt = optim.SGD([p, q], lr=1.0)
    opt.step()
    assert p.data[0] == 1.0 and q.data[0] == 1.0
    opt.zero_grad()
    assert q.grad is None


def test_float32_stays_float32():
    p = P([1.0, 2.0])
    p.data, p.grad = p.data.astype(np.float32), np.ones(2, np.float32)
    for opt in (optim.SGD([p], lr=0.1, momentum=0.9), optim.Adam([p]), optim.AdamW([p])):
        opt.step()
        assert p.data.dtype == np.float32


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(lr=-1.0), "lr must be"),
        (dict(lr=0.1, momentum=0.0, nesterov=True), "nesterov=True needs"),
        (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
        (dict(lr=0.1, weight_decay=-1), "weight_decay"),
    ],
)
def test_sgd_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        optim.SGD([P([1.0])], **kw)


def test_bad_params():
    with pytest.raises(ValueError, match="params must not be empty"):
        optim.Adam([])
    with pytest.raises(TypeError, match="Parameters"):
        optim.Adam([np.zeros(3)])
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([P([1.0])], betas=(0.9, 1.0))


def test_param_groups_have_their_own_lr():
    a, b = P([0.0], [1.0]), P([0.0], [1.0])
    optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1).step()
    assert a.data[0] == -0.1 and b.data[0] == -0.5


def test_step_lr_by_hand():
    opt = optim.SGD([P([1.0])], lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(sched.get_last_lr()[0])
        sched.step()
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_cosine_closed_form():
    opt = optim.SGD([P([1.0])], lr=0.1)
    sched = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.001)
    for t in range(1, 25):
        sched.step()
        want = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2
        assert sched.get_last_lr()[0] == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_plateau_by_hand():
    opt = optim.SGD([P([1.0])], lr=1.0)
    sched = optim.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1)
    lrs = []
    for metric in [5, 4, 4, 4, 4, 4, 4, 3]:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    # bad epochs: 4(1) 4(2 > patience: halve, cooldown) 4(cooldown) 4(1) 4(2: halve) ...
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_scheduler_bad_arguments():
    opt = optim.SGD([P([1.0])], lr=1.0)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(opt, T_max=0)
    with pytest.raises(ValueError, match="mode"):
        optim.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(TypeError, match="optimizer"):
        optim.StepLR(object(), step_size=1)


# -- side by side with PyTorch --------------------------------------------------------------

TORCH_CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize("name, kw", TORCH_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_optimizers_match_torch(name, kw, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 4)).astype(dtype)
    grads = rng.standard_normal((20, 3, 4)).astype(dtype)
    ours = P(p0)
    ours.data = p0.copy()
    theirs = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = getattr(optim, name)([ours], **kw)
    topt = getattr(torch.optim, name)([theirs], **kw, foreach=False)
    for g in grads:
        ours.grad = g.copy()
        theirs.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    # not bitwise: torch's CPU kernels fuse ``p + alpha * g`` into one FMA
    rtol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=rtol, atol=rtol)


def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    tp = [torch.nn.Parameter(torch.zeros(1))]
    cases = [
        (lambda o: optim.StepLR(o, 3, 0.3), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, 0.3)),
        (
            lambda o: optim.CosineAnnealingLR(o, 7, 0.01),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 0.01),
        ),
    ]
    for ours_f, theirs_f in cases:
        opt, topt = optim.SGD([P([0.0])], lr=0.2), torch.optim.SGD(tp, lr=0.2)
        s, ts = ours_f(opt), theirs_f(topt)
        for _ in range(30):
            assert s.get_last_lr() == ts.get_last_lr()
            opt.step()
            topt.step()
            s.step()
            ts.step()
    opt, topt = optim.SGD([P([0.0])], lr=0.2), torch.optim.SGD(tp, lr=0.2)
    kw = dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=1, min_lr=0.01)
    s, ts = optim.ReduceLROnPlateau(opt, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    for metric in [1, 1.05, 1.2, 1.2, 1.2, 1.2, 1.2, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3, 1.3]:
        s.step(metric)
        ts.step(metric)
        assert s.get_last_lr() == ts.get_last_lr()


def test_lenet5_follows_torchs_loss_curve_with_nesterov():
    """The issue's acceptance test: same network, same weights, same batches, float64:
    30 SGD-with-Nesterov steps give the same loss curve (relative difference < 1e-8)."""
    torch = pytest.importorskip("torch")
    from fastconv import data, models, nn

    tnn = torch.nn
    theirs = tnn.Sequential(
        tnn.Conv2d(1, 6, 5), tnn.Tanh(), tnn.AvgPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2),
        tnn.Conv2d(16, 120, 5), tnn.Tanh(), tnn.Flatten(),
        tnn.Linear(120, 84), tnn.Tanh(), tnn.Linear(84, 10),
    ).double()  # fmt: skip
    ours = models.lenet5(dtype=np.float64, rng=0)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    kw = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
    opt, topt = optim.SGD(ours.parameters(), **kw), torch.optim.SGD(theirs.parameters(), **kw)
    criterion, tcriterion = nn.CrossEntropyLoss(), tnn.CrossEntropyLoss()
    x, y = data.load_digits("train", dtype=np.float64)
    ours_curve, theirs_curve = [], []
    for step in range(30):
        idx = np.arange(step * 8, step * 8 + 8)
        ours_curve.append(criterion(ours(x[idx]), y[idx]))
        opt.zero_grad()
        ours.backward(criterion.backward())
        opt.step()
        tloss = tcriterion(theirs(torch.from_numpy(x[idx])), torch.from_numpy(y[idx]))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        theirs_curve.append(tloss.item())
    assert ours_curve[-1] < 0.8 * ours_curve[0]  # it did learn, so the curves mean something
    rel = np.abs(np.array(ours_curve) - theirs_curve) / np.abs(theirs_curve)
    assert rel.max() < 1e-8, rel


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    dampening=st.sampled_from([0.0, 0.3]),
    weight_decay=st.sampled_from([0.0, 1e-2]),
    nesterov=st.booleans(),
    adam=st.booleans(),
    amsgrad=st.booleans(),
    beta1=st.floats(0.0, 0.99),
)
def test_random_hyperparameters_match_torch(
    lr, momentum, dampening, weight_decay, nesterov, adam, amsgrad, beta1
):
    torch = pytest.importorskip("torch")
    if adam:
        name, kw = (
            "AdamW" if nesterov else "Adam",
            dict(lr=lr, betas=(beta1, 0.999), weight_decay=weight_decay, amsgrad=amsgrad),
        )
    else:
        if nesterov and (momentum == 0 or dampening != 0):
            nesterov = False
        name, kw = (
            "SGD",
            dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov),
        )
    rng = np.random.default_rng(1)
    ours = P(rng.standard_normal(6))
    theirs = torch.nn.Parameter(torch.from_numpy(ours.data.copy()))
    opt, topt = getattr(optim, name)([ours], **kw), getattr(torch.optim, name)([theirs], **kw, foreach=False)
    for g in rng.standard_normal((5, 6)):
        ours.grad, theirs.grad = g.copy(), torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
