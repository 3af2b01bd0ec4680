"""Pictures of a training run: the learning curves and the first layer's kernels."""

import numpy as np

from .._files import replace_atomically


def _atomic_savefig(fig, path):
    with replace_atomically(path, ".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def save_training_curves(history, path):
    """Plot loss and accuracy per epoch (training, and validation when present).

    Parameters
    ----------
    history : dict
        What :meth:`filtkit.cnn.Sequential.fit` returns.
    path : str or path-like
        The PNG to write (atomically).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    try:
        ax_loss.plot(epochs, history["loss"], "o-", label="training")
        ax_acc.plot(epochs, history["accuracy"], "o-", label="training")
        if "val_loss" in history:
            ax_loss.plot(epochs, history["val_loss"], "s--", label="validation")
            ax_acc.plot(epochs, history["val_accuracy"], "s--", label="validation")
        ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
        for ax in (ax_loss, ax_acc):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        _atomic_savefig(fig, path)
    finally:
        plt.close(fig)


def save_kernels(weight, path):
    """Draw every kernel of a convolution weight ``(O, C, Kh, Kw)`` (first input
    channel), each scaled to its own range, in a grid (atomically written PNG)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    w = np.asarray(weight, dtype=np.float64)[:, 0]
    n = w.shape[0]
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.4), squeeze=False)
    try:
        for i, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if i < n:
                ax.imshow(w[i], cmap="gray", interpolation="nearest")
                ax.set_title(str(i), fontsize=7)
        fig.suptitle(f"First-layer kernels ({n} x {w.shape[1]}x{w.shape[2]})", fontsize=9)
        fig.tight_layout()
        _atomic_savefig(fig, path)
    finally:
        plt.close(fig)
