"""A convolutional autoencoder: Conv2d downsamples, ConvTranspose2d upsamples back.

    python examples/conv_autoencoder.py

Trains on the bundled digits (32x32) to reproduce its input through a 16x8x8 bottleneck,
with Adam and the mean squared error, and reports the test reconstruction error.
"""

import numpy as np

import fastconv as fc
from fastconv import data, nn, optim

x_train, _ = data.load_digits("train")
x_test, _ = data.load_digits("test")

model = nn.Sequential(
    # encoder: 1x32x32 -> 8x16x16 -> 16x8x8
    nn.Conv2d(1, 8, 3, stride=2, padding=1, rng=0), nn.ReLU(),
    nn.Conv2d(8, 16, 3, stride=2, padding=1, rng=1), nn.ReLU(),
    # decoder: transposed convolutions undo the strides; output_padding=1 picks the even size
    nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1, rng=2), nn.ReLU(),
    nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1, rng=3),
)  # fmt: skip
print(fc.summary(model, (1, 32, 32)))

criterion = nn.MSELoss()
optimizer = optim.Adam(model.parameters(), lr=3e-3)
loader = data.DataLoader(x_train, x_train, batch_size=64, seed=0)
baseline = float(np.mean(x_test**2))  # the error of predicting all zeros (the mean)
for epoch in range(1, 6):
    losses = []
    for xb, target in loader:
        loss = criterion(model(xb), target)
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        losses.append(loss)
    test = criterion(model(x_test), x_test)
    print(
        f"epoch {epoch}  train MSE {np.mean(losses):.4f}  test MSE {test:.4f}  (predicting 0: {baseline:.4f})"
    )
