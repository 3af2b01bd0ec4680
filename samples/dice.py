"""The sum of two dice is the convolution of their distributions.

A fair die shows 1..6, each with probability ``p[k] = 1/6``.  The sum
``S = A + B`` of two independent dice equals ``s`` when ``A = a`` and
``B = s - a`` for some ``a``, so

    P(S = s) = sum_a P(A = a) P(B = s - a) = (p * p)[s]

which is exactly the discrete (full) convolution ``y[n] = sum_m p[m] p[n - m]``.
With the value ``k`` stored at index ``k - 1``, index ``n`` of
``convolve(p, p, mode="full")`` (length 6 + 6 - 1 = 11) holds ``P(S = n + 2)``:
the triangle 1, 2, ..., 6, ..., 2, 1 out of 36.

``mode="full"`` keeps every overlap of the two arrays, which is what a sum of
random variables needs; the default boundary ('constant' with 0) means "no
probability outside 1..6".  Convolving again gives three dice, and the shape
already looks like the bell curve of the central limit theorem.

The script checks both results against exact counting of all 36 (and 216)
outcomes before plotting them.
"""

import numpy as np
from _common import output_dir, plt, save_figure

from filtkit.signal import convolve


def exact_distribution(n_dice, faces=6):
    """P(sum) for sums n_dice..n_dice*faces, by listing every outcome."""
    values = np.arange(1, faces + 1)
    grids = np.meshgrid(*([values] * n_dice), indexing="ij")
    sums = sum(grids).ravel()
    counts = np.bincount(sums - n_dice, minlength=n_dice * (faces - 1) + 1)
    return counts / faces**n_dice


def main():
    out = output_dir(__doc__.splitlines()[0])

    p = np.full(6, 1 / 6)  # P(die = k) at index k - 1
    two = convolve(p, p, mode="full")  # P(sum = s) at index s - 2
    three = convolve(two, p, mode="full")  # P(sum = s) at index s - 3

    for n_dice, dist in ((2, two), (3, three)):
        expected = exact_distribution(n_dice)
        if dist.shape != expected.shape or not np.allclose(dist, expected, atol=1e-15):
            raise AssertionError(f"{n_dice} dice: convolution {dist} != counting {expected}")
    print("two dice, in 36ths:", np.round(two * 36).astype(int))

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    axes[0].bar(np.arange(1, 7), p, color="tab:gray")
    axes[0].set_title("one die: p[k] = 1/6")
    axes[1].bar(np.arange(2, 13), two, color="tab:blue", label="convolve(p, p, 'full')")
    axes[1].plot(np.arange(2, 13), exact_distribution(2), "k.", label="counting 36 outcomes")
    axes[1].set_title("sum of two dice")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].bar(np.arange(3, 19), three, color="tab:orange", label="convolve(p*p, p, 'full')")
    axes[2].plot(np.arange(3, 19), exact_distribution(3), "k.", label="counting 216 outcomes")
    axes[2].set_title("sum of three dice")
    axes[2].legend(loc="upper left", fontsize=8)
    axes[2].set_xticks(np.arange(3, 19, 3))
    for ax in axes:
        ax.set_ylim(0, 1.3 * max(bar.get_height() for bar in ax.patches))  # room for the legend
        ax.set_xlabel("value")
        ax.set_ylabel("probability")
    fig.suptitle("Distribution of a sum = convolution of the distributions")
    save_figure(fig, out, "dice.png")


if __name__ == "__main__":
    main()
