"""Drawing the positions of joint and marginal pairs (paper Section 3.2, Fig. 2).

H_l is (C_l, h, w, N) and H_{l+1}, brought up to (h, w), is (C_{l+1}, h, w, N).
A position is an image n and a flat location s = y * w + x on that (h, w) grid.
All randomness comes from the numpy Generator passed in and every draw is
vectorized, so the same generator state gives the same pairs (a gradient
check replays a forward exactly). Index arrays stay on the host here: the
draws give a PairIndex (images and locations), ``pair_positions`` turns it into
the columns the pair layer reads (PairPositions), and those move to the device
with one ``xp.asarray`` per forward, or those of many steps at once (the
trainer's method, experiment/methods.py, with training.upload_joined).

Joint pairs (samples from P, the joint of H_l and H_{l+1} vectors):
    K = min(samples, h*w) locations per image, drawn WITHOUT replacement
    within each image (``rng.permuted`` of 0..h*w-1 per image, first K);
    samples="all" (or K >= h*w) takes every location once, in order, and
    draws nothing. Pair i is (H_l[n_i, :, s_i], up(H_{l+1})[n_i, :, s_i]).
Marginal pairs (samples from Q, the product of the marginals), as many as
joint pairs, S_Q = S_P = N*K, every draw WITH replacement and independent:
    marginal="image" (default): row i keeps the image n_i of joint row i; the
        H_l location and the H_{l+1} location are drawn independently, uniform
        over the h*w locations of that image.
    marginal="batch": the image and the location of each side are drawn
        independently, uniform over the N*h*w positions of the batch.
    With "batch", D can tell most joint from marginal pairs by whether the two
    halves come from the same image (e.g. the same background texture),
    without looking at how H_l and H_{l+1} correlate at one location; with
    "image" both halves of every pair share the image, so only the location
    correspondence separates P from Q. Hence the default.
Draw order (fixed, for replay): joint locations, marginal H_l locations,
marginal H_{l+1} locations, then (batch only) marginal H_l images, H_{l+1}
images.

InfoNCE (``sample_infonce_pairs``) uses no separately drawn marginal pairs:
the joint pairs are split into G groups of B, and the negatives of member i
of a group are (H_l vector of i, H_{l+1} vector of j) for every other member
j. Groups are the images (G = N, B = K) with marginal="image" and the
location slots across the batch (G = K, B = N: member n of group k is the
k-th joint location of image n) with marginal="batch". That is S_P = G*B
joint and G*B*(B-1) negative rows.
"""
from typing import NamedTuple, Optional

import numpy as np


class PairIndex(NamedTuple):
    """Rows [0, n_joint) are joint pairs, the rest marginal; all arrays (S,) int64."""
    low_n: np.ndarray       # image of the H_l vector of each row
    low_s: np.ndarray       # its location y*w + x on the (h, w) grid
    high_n: np.ndarray      # image of the H_{l+1} vector of each row
    high_s: np.ndarray      # its location y*w + x on the upsampled (h, w) grid
    n_joint: int
    groups: Optional[tuple] = None   # (G, B) for InfoNCE, else None


def locations_per_image(samples, hw):
    """K for ``samples`` (a positive int or "all") on a map of hw locations."""
    if isinstance(samples, str):
        if samples != "all":
            raise ValueError(f"samples must be a positive integer or 'all', got {samples!r}")
        return hw
    if isinstance(samples, bool) or int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer or 'all', got {samples!r}")
    return min(int(samples), hw)


def count_rows(N, h, w, samples, marginal, infonce=False):
    """Rows through D for these settings, without drawing: 2 N K, or G B^2 for InfoNCE."""
    K = locations_per_image(samples, h * w)
    if not infonce:
        return 2 * N * K
    G, B = (N, K) if marginal == "image" else (K, N)
    return G * B * B


def draw_joint_locations(N, hw, K, rng):
    """(N, K) int64: K distinct locations per image (every location, in order, if K == hw)."""
    if K >= hw:
        return np.broadcast_to(np.arange(hw, dtype=np.int64), (N, hw)).copy()
    grid = np.broadcast_to(np.arange(hw, dtype=np.int64), (N, hw))
    return np.ascontiguousarray(rng.permuted(grid, axis=1)[:, :K])


def sample_pairs(N, h, w, samples, marginal, rng):
    """PairIndex of N*K joint then N*K marginal rows (see the module docstring)."""
    if marginal not in ("image", "batch"):
        raise ValueError(f"marginal must be 'image' or 'batch', got {marginal!r}")
    hw = h * w
    K = locations_per_image(samples, hw)
    S = N * K
    joint_n = np.repeat(np.arange(N, dtype=np.int64), K)
    joint_s = draw_joint_locations(N, hw, K, rng).reshape(S)
    marg_low_s = rng.integers(0, hw, S, dtype=np.int64)
    marg_high_s = rng.integers(0, hw, S, dtype=np.int64)
    if marginal == "image":
        marg_low_n = marg_high_n = joint_n
    else:
        marg_low_n = rng.integers(0, N, S, dtype=np.int64)
        marg_high_n = rng.integers(0, N, S, dtype=np.int64)
    return PairIndex(np.concatenate([joint_n, marg_low_n]),
                     np.concatenate([joint_s, marg_low_s]),
                     np.concatenate([joint_n, marg_high_n]),
                     np.concatenate([joint_s, marg_high_s]), S)


def other_members(B):
    """(B, B-1) int64: row i lists 0..B-1 without i."""
    j = np.arange(B - 1, dtype=np.int64)[None, :]
    i = np.arange(B, dtype=np.int64)[:, None]
    return j + (j >= i)


def sample_infonce_pairs(N, h, w, samples, marginal, rng):
    """PairIndex of G*B joint rows (group-major) then G*B*(B-1) negative rows (g, i, j)."""
    if marginal not in ("image", "batch"):
        raise ValueError(f"marginal must be 'image' or 'batch', got {marginal!r}")
    K = locations_per_image(samples, h * w)
    locations = draw_joint_locations(N, h * w, K, rng)                        # (N, K)
    images = np.broadcast_to(np.arange(N, dtype=np.int64)[:, None], (N, K))
    if marginal == "batch":
        locations, images = locations.T, images.T                            # groups = slots
    G, B = locations.shape
    if B < 2:
        raise ValueError(f"infonce needs at least two joint pairs per group; got {B} "
                         f"({'samples' if marginal == 'image' else 'batch size'} = {B})")
    others = other_members(B)
    low_n = np.broadcast_to(images[:, :, None], (G, B, B - 1))
    low_s = np.broadcast_to(locations[:, :, None], (G, B, B - 1))
    high_n, high_s = images[:, others], locations[:, others]                # (G, B, B-1)
    flat = lambda a, b: np.concatenate([a.reshape(-1), b.reshape(-1)])      # noqa: E731
    return PairIndex(flat(images, low_n), flat(locations, low_s),
                     flat(images, high_n), flat(locations, high_s), G * B, (G, B))


def coarse_locations(s, w, scale):
    """Location on the (h/scale, w/scale) grid of H_{l+1} that nearest upsampling
    copies to location s = y*w + x of the (h, w) grid: (y//scale, x//scale)."""
    return (s // w // scale) * (w // scale) + (s % w) // scale


class PairPositions(NamedTuple):
    """The pairs of one forward as columns of channel matrices, as the pair layer reads them.

    ``pairs.channel_matrix`` views a map H (C, h, w, N) as (C, h*w*N), whose
    column p = s N + n holds H[:, s, n] (location s = y w + x, image n).
    columns (3, S) int, on the host or on the device:
        row 0: p = s N + n, the H_l half of each pair, a column of H_l;
        row 1: p = t N + m, its U = up(H_{l+1}) half, a column of U ((h, w) grid);
        row 2: the same half as a column of the map the speed path reads it from:
               H_{l+1} itself for nearest upsampling (the coarse location that
               up copies to t, (y//s, x//s)), U for bilinear (row 1).
    The first n_joint columns are joint pairs, the rest marginal; ``groups`` is
    (G, B) for InfoNCE, else None.
    """
    columns: object
    n_joint: int
    groups: Optional[tuple] = None

    def on(self, xp):
        """These positions with the columns on xp's device."""
        return self._replace(columns=xp.asarray(self.columns))


def pair_positions(index, low_shape, high_shape, upsample):
    """PairPositions (host) of a PairIndex drawn for H_l of ``low_shape`` (C_l, h, w, N) and
    H_{l+1} of ``high_shape``, brought up to (h, w) by ``upsample``."""
    _, h, w, N = low_shape
    up = index.high_s * N + index.high_n
    read = up
    if upsample == "nearest":
        read = coarse_locations(index.high_s, w, h // high_shape[1]) * N + index.high_n
    return PairPositions(np.stack([index.low_s * N + index.low_n, up, read]), index.n_joint,
                         index.groups)
