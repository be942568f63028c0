"""A few training steps of ResNet-18 on small random data: BatchNorm and residual blocks at work.

    python examples/train_resnet18_small.py

ResNet-18 (11.2M parameters at 10 classes) trains here on 8 random 32x32 images; the point is
to watch the pieces, not to learn anything: the loss falls as the network memorises the
batch, BatchNorm's running statistics move, and the residual blocks pass gradients back.
"""

import time

import numpy as np

import fastconv as fc
from fastconv import models, nn, optim

rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
y = rng.integers(0, 10, size=8)

model = models.resnet18(num_classes=10, rng=0)
table = fc.summary(model, (3, 32, 32))
print(f"ResNet-18: {table.total_params:,} parameters, {table.total_macs:,} MACs per 32x32 image")

# A basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the first block of
# layer2 halves the size and doubles the width, so its shortcut is a strided 1x1 conv + BN.
block = model.layer2[0]
print("layer2.0:", block)

criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
bn = model.bn1
for step in range(1, 7):
    start = time.perf_counter()
    loss = criterion(model(x), y)  # training mode: BatchNorm normalises with batch statistics
    optimizer.zero_grad()
    dx = model.backward(criterion.backward())
    optimizer.step()
    print(
        f"step {step}  loss {loss:.4f}  |d loss/d x| {np.abs(dx).mean():.2e}  "
        f"bn1 running_mean[:3] {np.round(bn.running_mean[:3], 4)}  {time.perf_counter() - start:.2f} s"
    )

# Evaluation mode: BatchNorm uses its running statistics instead of the batch's. After only
# six steps (momentum 0.1) they are still far from the batch statistics, so this loss differs.
model.eval()
print(f"eval-mode loss {criterion(model(x), y):.4f}")
