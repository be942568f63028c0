"""Classic image filters as convolutions: Gaussian blur and Sobel edges.

Reads the Grace Hopper photo that ships with matplotlib, runs ``fastconv.conv2d`` with
hand-made kernels (no training involved) and saves ``image_filters.png``:

    python examples/image_filters.py [output.png]
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.cbook as cbook  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fastconv as fc  # noqa: E402


def gaussian_kernel(size: int = 7, sigma: float = 1.5) -> np.ndarray:
    """A normalised 2-D Gaussian, the outer product of two 1-D ones."""
    r = np.arange(size) - size // 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return np.outer(g, g) / g.sum() ** 2


# 1. A grey image as a batch of one: (N=1, C=1, H, W), float32 in [0, 1].
rgb = plt.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).astype(np.float32) / 255
gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
x = gray[None, None]

# 2. Blur: one output channel, one input channel, a 7x7 kernel; "same" padding with
#    reflected borders keeps the size without darkening the edges.
blur_w = gaussian_kernel().astype(np.float32)[None, None]  # (C_out=1, C_in=1, 7, 7)
blurred = fc.conv2d(x, blur_w, padding="same", padding_mode="reflect")

# 3. Sobel: two output channels (d/dx, d/dy) from one convolution of the blurred image.
sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
sobel_w = np.stack([sobel_x, sobel_x.T])[:, None]  # (C_out=2, C_in=1, 3, 3)
grad = fc.conv2d(blurred, sobel_w, padding=1, padding_mode="replicate")
edges = np.hypot(grad[0, 0], grad[0, 1])

print(
    f"image {gray.shape}, blurred {blurred.shape[2:]}, edges {edges.shape}, strongest edge {edges.max():.2f}"
)

fig, axes = plt.subplots(1, 4, figsize=(16, 4.5))
panels = [
    (gray, "input"),
    (blurred[0, 0], "Gaussian blur 7x7, sigma 1.5"),
    (grad[0, 0], "Sobel d/dx"),
    (edges, "Sobel magnitude"),
]
for ax, (img, title) in zip(axes, panels, strict=True):
    ax.imshow(img, cmap="gray")
    ax.set_title(title)
    ax.axis("off")
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "image_filters.png"
fig.savefig(out, dpi=80)
print(f"wrote {out}")
