"""Pair sampling (replay, counts, marginal options), the positions' columns, and the
gather/scatter of pair vectors."""
import numpy as np
import pytest

from ifm import IFMRegularizer, fast_pairs, pairs
from ifm.sampling import (coarse_locations, count_rows, locations_per_image, other_members,
                          pair_positions, sample_infonce_pairs, sample_pairs)
from nn.upsample import bilinear_upsample_forward, nearest_upsample_forward

# Every test runs twice: serial, and with every op split into blocks (conftest.py), except
# those marked no_split (the pair sampling and the refused shapes never reach nn.cpu.parallel).
pytestmark = pytest.mark.usefixtures("cores_mode")


def draw(seed, **kw):
    args = dict(N=5, h=6, w=4, samples=7, marginal="image")
    args.update(kw)
    return sample_pairs(args["N"], args["h"], args["w"], args["samples"], args["marginal"],
                        np.random.default_rng(seed))


# ------------------------------------------------------------------ sampling
@pytest.mark.no_split
@pytest.mark.parametrize("marginal", ["image", "batch"])
@pytest.mark.parametrize("sampler", [sample_pairs, sample_infonce_pairs])
def test_same_generator_state_same_pairs(sampler, marginal):
    a = sampler(5, 6, 4, 7, marginal, np.random.default_rng(11))
    b = sampler(5, 6, 4, 7, marginal, np.random.default_rng(11))
    c = sampler(5, 6, 4, 7, marginal, np.random.default_rng(12))
    assert a.low_n.size == count_rows(5, 6, 4, 7, marginal, sampler is sample_infonce_pairs)
    for x, y, z in zip(a[:4], b[:4], c[:4]):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, z) for x, z in zip(a[:4], c[:4]))


@pytest.mark.no_split
def test_counts_and_joint_rows():
    idx = draw(0)
    S = 5 * 7
    assert idx.n_joint == S and all(a.shape == (2 * S,) and a.dtype == np.int64 for a in idx[:4])
    j = slice(0, S)
    np.testing.assert_array_equal(idx.low_n[j], idx.high_n[j])      # same image
    np.testing.assert_array_equal(idx.low_s[j], idx.high_s[j])      # same location
    np.testing.assert_array_equal(idx.low_n[j], np.repeat(np.arange(5), 7))


@pytest.mark.no_split
def test_joint_locations_are_distinct_within_each_image():
    idx = draw(3, samples=20)                                        # 20 of 24 locations
    s = idx.low_s[:idx.n_joint].reshape(5, 20)
    assert all(len(set(row)) == 20 for row in s)
    assert not all(np.array_equal(s[0], row) for row in s[1:])       # drawn per image


@pytest.mark.no_split
def test_all_and_oversized_k_take_every_location_once():
    for samples in ("all", 24, 100):
        idx = draw(1, samples=samples)
        assert idx.n_joint == 5 * 24
        np.testing.assert_array_equal(idx.low_s[:idx.n_joint], np.tile(np.arange(24), 5))
        assert idx.low_s.shape == (2 * 5 * 24,)


@pytest.mark.no_split
def test_samples_validation():
    assert locations_per_image("all", 16) == 16 and locations_per_image(3, 16) == 3
    for bad in (0, -1, 2.5, "some", True):
        with pytest.raises(ValueError):
            locations_per_image(bad, 16)
    with pytest.raises(ValueError):
        draw(0, marginal="global")


@pytest.mark.no_split
def test_image_marginals_stay_in_one_image_batch_marginals_do_not():
    idx = draw(2, N=40, samples=50, h=8, w=8)
    m = slice(idx.n_joint, None)
    np.testing.assert_array_equal(idx.low_n[m], idx.high_n[m])
    np.testing.assert_array_equal(idx.low_n[m], idx.low_n[:idx.n_joint])
    # locations independent: rarely equal (1/64 by chance), and every location used
    assert np.mean(idx.low_s[m] == idx.high_s[m]) < 0.05
    assert set(idx.low_s[m]) == set(range(64)) and set(idx.high_s[m]) == set(range(64))
    b = draw(2, N=8, samples=50, h=8, w=8, marginal="batch")
    m = slice(b.n_joint, None)
    same = np.mean(b.low_n[m] == b.high_n[m])
    assert 0.05 < same < 0.2                                          # 1/N = 0.125 by chance
    assert set(b.low_n[m]) == set(b.high_n[m]) == set(range(8))


@pytest.mark.no_split
@pytest.mark.parametrize("marginal", ["image", "batch"])
def test_infonce_negatives_pair_each_member_with_every_other(marginal):
    N, K = 3, 4
    idx = sample_infonce_pairs(N, 4, 4, K, marginal, np.random.default_rng(0))
    G, B = idx.groups
    assert (G, B) == ((N, K) if marginal == "image" else (K, N))
    nj = idx.n_joint
    assert nj == G * B and idx.low_n.size == nj + G * B * (B - 1)
    pos_n, pos_s = idx.low_n[:nj].reshape(G, B), idx.low_s[:nj].reshape(G, B)
    neg = [a[nj:].reshape(G, B, B - 1) for a in idx[:4]]
    others = other_members(B)
    for g in range(G):
        for i in range(B):
            assert np.all(neg[0][g, i] == pos_n[g, i]) and np.all(neg[1][g, i] == pos_s[g, i])
            np.testing.assert_array_equal(neg[2][g, i], pos_n[g, others[i]])
            np.testing.assert_array_equal(neg[3][g, i], pos_s[g, others[i]])
    if marginal == "image":
        assert np.all(pos_n == np.arange(N)[:, None])                 # a group is one image
    else:
        assert np.all(pos_n == np.arange(N)[None, :])                 # one member per image
        np.testing.assert_array_equal(neg[2] == neg[0], False)         # negatives cross images


@pytest.mark.no_split
def test_other_members():
    np.testing.assert_array_equal(other_members(3), [[1, 2], [0, 2], [0, 1]])


@pytest.mark.no_split
def test_coarse_locations():
    h, w, s = 6, 4, 2
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    fine = (y * w + x).ravel()
    np.testing.assert_array_equal(coarse_locations(fine, w, s),
                                  ((y // s) * (w // s) + x // s).ravel())


# ----------------------------------------------------------- gather / scatter
GATHERS = {"formula": (pairs.gather, pairs.scatter),
           "fast": (fast_pairs.gather_columns,
                    lambda values, cols, n: fast_pairs.scatter_add_columns(cols, values, n))}


def gather_vectors(kind, H, n, s):
    """(C, S) vectors H[:, s_r, n_r] of a map H (C, h, w, N), through the library's gather."""
    return GATHERS[kind][0](pairs.channel_matrix(H), s * H.shape[3] + n)


def scatter_vectors(kind, dvec, n, s, shape):
    """The adjoint of gather_vectors through the library's column scatter."""
    _, h, w, N = shape
    return GATHERS[kind][1](dvec, s * N + n, h * w * N).reshape(shape)


def scatter_loop(dvec, n, s, shape):
    """Loop oracle of the scatter."""
    out = np.zeros(shape)
    w = shape[2]
    for r in range(len(n)):
        out[:, s[r] // w, s[r] % w, n[r]] += dvec[:, r]
    return out


@pytest.mark.parametrize("kind", [pytest.param("formula", marks=pytest.mark.no_split), "fast"])
def test_gather_and_scatter_against_loops_with_repeats(kind):
    rng = np.random.default_rng(0)
    H = rng.standard_normal((3, 3, 5, 2))
    n = np.array([0, 1, 1, 0, 1, 1])
    s = np.array([4, 14, 14, 0, 7, 14])                                # (1, 14) three times
    vec = gather_vectors(kind, H, n, s)
    for r in range(len(n)):
        np.testing.assert_array_equal(vec[:, r], H[:, s[r] // 5, s[r] % 5, n[r]])
    dvec = rng.standard_normal((3, 6))
    scattered = scatter_vectors(kind, dvec, n, s, H.shape)
    np.testing.assert_allclose(scattered, scatter_loop(dvec, n, s, H.shape), rtol=1e-14)
    # adjoint identity: <gather(H), dvec> = <H, scatter(dvec)>
    assert np.sum(vec * dvec) == pytest.approx(np.sum(H * scattered))


@pytest.mark.no_split
@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
def test_positions_name_each_half_in_every_map_it_is_read_from(upsample):
    """Row 0 is the H_l column of (n, s), row 1 the U column of (m, t); row 2 reads the
    same vector from H_{l+1} itself (nearest: at the coarse location) or from U."""
    rng = np.random.default_rng(1)
    h_low, h_high = rng.standard_normal((2, 6, 4, 3)), rng.standard_normal((5, 3, 2, 3))
    idx = sample_pairs(3, 6, 4, 9, "batch", rng)
    columns = pair_positions(idx, h_low.shape, h_high.shape, upsample).columns
    U = (nearest_upsample_forward if upsample == "nearest" else bilinear_upsample_forward)(
        h_high, 2)
    np.testing.assert_array_equal(pairs.gather(pairs.channel_matrix(h_low), columns[0]),
                                  h_low[:, idx.low_s // 4, idx.low_s % 4, idx.low_n])
    U_pairs = U[:, idx.high_s // 4, idx.high_s % 4, idx.high_n]
    np.testing.assert_array_equal(pairs.gather(pairs.channel_matrix(U), columns[1]), U_pairs)
    read_from = h_high if upsample == "nearest" else U
    np.testing.assert_array_equal(pairs.gather(pairs.channel_matrix(read_from), columns[2]),
                                  U_pairs)


@pytest.mark.no_split
def test_joint_pairs_are_the_concatenated_vectors_at_one_position():
    rng = np.random.default_rng(3)
    h_low, h_high = rng.standard_normal((3, 4, 4, 2)), rng.standard_normal((4, 2, 2, 2))
    reg = IFMRegularizer.one_pair(3, 4, samples=3, rng=rng, dtype=np.float64)
    [p] = reg.draw([h_low.shape, h_high.shape], np.random.default_rng(0))
    layer = reg.discriminators[0].pair_layer
    a = layer.forward(h_low, h_high, p.columns)
    for r in range(p.n_joint):
        s, n = divmod(p.columns[0, r], 2)
        assert p.columns[1, r] == p.columns[0, r]       # the same (n, s) on U's grid
        y, x = divmod(s, 4)
        z = np.concatenate([h_low[:, y, x, n], h_high[:, y // 2, x // 2, n]])
        np.testing.assert_allclose(a[:, r], layer.params["W"] @ z + layer.params["b"],
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.no_split
def test_bad_shapes_are_refused():
    one_pair = IFMRegularizer.one_pair
    block = one_pair(3, 4, samples=2, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        block.forward([np.zeros((3, 4, 4, 2)), np.zeros((4, 3, 3, 2))], rng)     # not h/2
    with pytest.raises(ValueError):
        block.forward([np.zeros((3, 4, 4, 2)), np.zeros((4, 2, 2, 3))], rng)     # batch sizes
    with pytest.raises(ValueError):
        block.forward([np.zeros((5, 4, 4, 2)), np.zeros((4, 2, 2, 2))], rng)     # channels
    for kw in ({"upsample": "cubic"}, {"marginal": "none"}, {"estimator": "mine"},
               {"samples": 0}, {"estimator": "jsd", "dv_ema": 0.1}):
        with pytest.raises(ValueError):
            one_pair(3, 4, **kw)
    with pytest.raises(ValueError):                        # InfoNCE needs >= 2 per group
        one_pair(3, 4, samples=1, estimator="infonce").forward(
            [np.zeros((3, 4, 4, 2), np.float32), np.zeros((4, 2, 2, 2), np.float32)], rng)
