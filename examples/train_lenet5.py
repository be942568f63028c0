"""Train LeNet-5 on the bundled handwritten digits: the job of ``python -m fastconv train``,
written out top to bottom.

    python examples/train_lenet5.py

Nothing is downloaded: the 1,797 8x8 digits ship with fastconv and are resized to 32x32.
"""

import time

import numpy as np

import fastconv as fc
from fastconv import checkpoint, data, models, nn, optim

EPOCHS, BATCH_SIZE, LR, SEED = 15, 32, 0.05, 0

# 1. Data: a fixed train/test split, normalised; batches reshuffled each epoch from a seed,
#    each image shifted by up to 2 pixels (augmentation).
x_train, y_train = data.load_digits("train")  # (1437, 1, 32, 32) float32, (1437,) int64
x_test, y_test = data.load_digits("test")  # (360, 1, 32, 32), (360,)
loader = data.DataLoader(
    x_train, y_train, BATCH_SIZE, seed=SEED, transform=lambda xb, rng: data.random_translate(xb, 2, rng)
)

# 2. The network of the notes: conv 6@28x28, pool, conv 16@10x10, pool, conv 120, 84, 10.
model = models.lenet5(num_classes=10, rng=SEED)
print(fc.summary(model, (1, 32, 32)))

# 3. Loss, optimizer, schedule: SGD with Nesterov momentum, cosine-annealed learning rate.
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
scheduler = optim.CosineAnnealingLR(optimizer, T_max=EPOCHS)


def accuracy(x, y):
    model.eval()  # no effect on LeNet-5, but the habit matters for Dropout/BatchNorm
    predictions = np.concatenate([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    model.train()
    return float((predictions == y).mean())


# 4. Training: forward, loss, backward (fills every Parameter.grad), step.
for epoch in range(1, EPOCHS + 1):
    start, losses = time.perf_counter(), []
    for xb, yb in loader:
        loss = criterion(model(xb), yb)
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        losses.append(loss)
    scheduler.step()
    print(
        f"epoch {epoch:2d}  loss {np.mean(losses):.4f}  test accuracy {accuracy(x_test, y_test):.4f}  "
        f"lr {scheduler.get_last_lr()[0]:.4f}  {time.perf_counter() - start:.1f} s"
    )

# 5. Result and checkpoint (written atomically; load it back with checkpoint.load_into).
print(f"test accuracy: {accuracy(x_test, y_test):.4f}")
checkpoint.save("lenet5_digits.npz", model, meta={"epochs": EPOCHS})
print("wrote lenet5_digits.npz")
