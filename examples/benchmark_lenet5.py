"""The numbers of the closing note, in one process: the default ``python -m fastconv train``
(final test accuracy, seconds per epoch), then the time of one LeNet-5 training step
(forward + backward + SGD step, batch 64, float32) in fastconv and in PyTorch.

    python examples/benchmark_lenet5.py [output folder]

Step times are medians of 20 steps after 3 warm-up steps, on the same batch, the same
weights and each library's default thread count. The two libraries' steps alternate, so a
busy machine slows both alike.
"""

import json
import os
import statistics
import sys
import time

import numba

from fastconv import data, models, nn, optim, train

out = sys.argv[1] if len(sys.argv) > 1 else "runs/benchmark"
assert train.main(["--out", out]) == 0
with open(os.path.join(out, "history.json")) as f:
    history = json.load(f)

x, y = data.load_digits("train")
xb, yb = x[:64], y[:64]

model = models.lenet5(rng=0)
criterion = nn.CrossEntropyLoss()
opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)


def ours():
    criterion(model(xb), yb)
    opt.zero_grad()
    model.backward(criterion.backward())
    opt.step()


steps = {"fastconv": ours}
try:
    import torch
except ImportError:
    torch = None
else:
    tnn = torch.nn
    tmodel = tnn.Sequential(
        tnn.Conv2d(1, 6, 5), tnn.Tanh(), tnn.AvgPool2d(2), tnn.Conv2d(6, 16, 5), tnn.Tanh(), tnn.AvgPool2d(2),
        tnn.Conv2d(16, 120, 5), tnn.Tanh(), tnn.Flatten(), tnn.Linear(120, 84), tnn.Tanh(), tnn.Linear(84, 10),
    )  # fmt: skip
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in models.lenet5(rng=0).state_dict().items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    txb, tyb, tcrit = torch.from_numpy(xb), torch.from_numpy(yb), tnn.CrossEntropyLoss()

    def theirs():
        loss = tcrit(tmodel(txb), tyb)
        topt.zero_grad()
        loss.backward()
        topt.step()

    steps["PyTorch"] = theirs

times = {name: [] for name in steps}
for rep in range(23):
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        if rep >= 3:  # the first three are warm-up
            times[name].append(time.perf_counter() - start)
ms = {name: 1000 * statistics.median(t) for name, t in times.items()}

print(f"final test accuracy: {history['test_acc'][-1]:.4f}")
print(
    f"time per epoch: {statistics.median(history['epoch_seconds']):.2f} s "
    f"(median of {len(history['epoch_seconds'])} epochs, batch {history['args']['batch_size']})"
)
print(
    f"LeNet-5 step, batch 64, float32: fastconv {ms['fastconv']:.1f} ms ({numba.get_num_threads()} threads)"
)
if torch is None:
    print("PyTorch is not installed: no comparison")
else:
    print(
        f"LeNet-5 step, batch 64, float32: PyTorch {torch.__version__} {ms['PyTorch']:.1f} ms "
        f"({torch.get_num_threads()} threads); fastconv / PyTorch = {ms['fastconv'] / ms['PyTorch']:.1f}x"
    )
print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
