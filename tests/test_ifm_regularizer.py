"""IFMRegularizer as a module: live params, the stacked critics, modes, state, and the
training step."""
import numpy as np
import pytest
from gradcheck import check_directional

from experiment.classifier import Classifier
from ifm import Critic, IFMRegularizer
from nn import SGD, softmax_cross_entropy
from nn.flat import move_into_flat_buffers
from nn.module import Container

SMALL = (8, 6, 5)
D_KEYS = ["0.W", "0.b", "1.gamma", "1.beta", "3.W", "3.b", "4.gamma", "4.beta",
          "6.W", "6.b", "7.gamma", "7.beta", "9.W", "9.b"]
STACK_KEYS = [k for k in D_KEYS if not k.startswith("0.")]


def maps(N=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 8, 8, N)).astype(dtype),
            rng.standard_normal((4, 4, 4, N)).astype(dtype))


def one_pair(**options):
    return IFMRegularizer.one_pair(3, 4, **options)


def test_params_are_Ds_table2_layers_stacked():
    reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], rng=np.random.default_rng(0))
    keys = ["ifm12.0.W", "ifm12.0.b", "ifm23.0.W", "ifm23.0.b"] + [f"D.{k}" for k in STACK_KEYS]
    assert list(reg.params) == keys and list(reg.grads) == keys
    shapes = {k: p.shape for k, p in reg.params.items()}
    assert shapes["ifm12.0.W"] == (256, 7) and shapes["ifm23.0.W"] == (256, 9)
    assert shapes["D.1.gamma"] == (2, 256) and shapes["D.3.W"] == (2, 128, 256)
    assert shapes["D.6.W"] == (2, 64, 128) and shapes["D.9.W"] == (2, 1, 64)
    assert all(p.dtype == np.float32 for p in reg.params.values())
    assert set(reg.buffers) == {f"D.{i}.{b}" for i in (1, 4, 7)
                                for b in ("running_mean", "running_var")}
    # each D_l under its own name: member l of every stack
    named = reg.pair_params()
    assert list(named) == [f"{n}.{k}" for n in ("ifm12", "ifm23") for k in D_KEYS]
    assert named["ifm23.3.W"].shape == (128, 256)
    assert np.shares_memory(named["ifm23.3.W"], reg.params["D.3.W"])


def test_forward_returns_0d_arrays_and_replays():
    block = one_pair(samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    [F1] = block.forward([h_low, h_high], np.random.default_rng(9))
    [F2] = block.forward([h_low, h_high], np.random.default_rng(9))
    [F3] = block.forward([h_low, h_high], np.random.default_rng(10))
    assert isinstance(F1, np.ndarray) and F1.shape == () and F1.dtype == np.float32
    assert F1 == F2 and F1 != F3
    dh_low, dh_high = block.backward(1.0)
    assert dh_low.dtype == np.float32 and dh_high.dtype == np.float32


def test_assigning_a_param_takes_effect():
    reg = one_pair(samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    [F0] = reg.forward([h_low, h_high], np.random.default_rng(1))
    reg.params["D.9.b"] = reg.params["D.9.b"] + np.float32(3.0)
    assert reg.critic.params["9.b"][0, 0] == pytest.approx(3.0)
    assert reg.forward([h_low, h_high], np.random.default_rng(1))[0] != F0


@pytest.mark.parametrize("estimator, dv_ema", [("jsd", None), ("dv", 0.3), ("infonce", None),
                                               ("paper-eq4", None)])
def test_a_stacked_run_equals_each_critic_alone(estimator, dv_ema):
    """Critic of 3 members: one run of all three gives, member by member, the F, da,
    gradients and running statistics (and DV moving averages) of three runs of one."""
    rng = np.random.default_rng(4)
    G, B = 3, 4
    n_joint, groups = (G * B, (G, B)) if estimator == "infonce" else (10, None)
    S = n_joint + (G * B * (B - 1) if estimator == "infonce" else 14)
    a = rng.standard_normal((3, SMALL[0], S))
    dF = rng.standard_normal(3)

    def critic():
        return Critic(3, estimator, SMALL, np.random.default_rng(0), np.float64, dv_ema)

    together, alone = critic(), critic()
    for step in range(2):               # twice: the running states carry over
        F, cache = together.forward(a, n_joint, groups)
        da = together.backward(dF, cache)
        for g in range(3):
            members = slice(g, g + 1)
            F_g, cache_g = alone.forward(a[members], n_joint, groups, members)
            da_g = alone.backward(dF[members], cache_g)
            np.testing.assert_allclose(F_g, F[members], rtol=1e-13)
            np.testing.assert_allclose(da_g, da[members], rtol=1e-12, atol=1e-14)
        for store in ("grads", "buffers"):
            for key, value in getattr(together, store).items():
                np.testing.assert_allclose(getattr(alone, store)[key], value, rtol=1e-12,
                                           atol=1e-14, err_msg=key)


def test_train_eval_and_astype():
    reg = IFMRegularizer([3, 4, 5], samples=4, pairs=[(1, 2), (2, 3)], estimator="dv",
                         dv_ema=0.1, rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.eval() is reg
    assert not reg.critic.estimate.training
    assert all(not layer.training for layer in reg.critic.children())
    reg.train()
    assert all(layer.training for layer in reg.critic.children())
    assert reg.state_dict()["D.dv.log_ema"].shape == (2,)
    assert "D.4.running_var" in reg.state_dict()
    reg.astype(np.float64).to("cpu")
    assert all(p.dtype == np.float64 for p in reg.params.values())
    assert all(b.dtype == np.float64 for b in reg.buffers.values())


def test_eval_mode_uses_running_statistics():
    block = one_pair(samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    block.forward([h_low, h_high], np.random.default_rng(1))
    rm = block.buffers["D.1.running_mean"].copy()
    block.eval()
    block.forward([h_low, h_high], np.random.default_rng(1))
    np.testing.assert_array_equal(block.buffers["D.1.running_mean"], rm)


def test_regularizer_keys_and_validation():
    reg = IFMRegularizer([32, 64, 128, 128], rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.names == ["ifm12", "ifm23", "ifm34"]
    assert [(b.c_low, b.c_high) for b in reg.blocks] == [(32, 64), (64, 128), (128, 128)]
    assert set(reg.pair_params()) == {f"{n}.{k}" for n in reg.names for k in D_KEYS}
    assert set(reg.grads) == set(reg.params)
    for pairs in ([(1, 3)], [(0, 1)], [(4, 5)], [(1, 2), (1, 2)]):
        with pytest.raises(ValueError):
            IFMRegularizer([32, 64, 128, 128], pairs=pairs)


@pytest.mark.parametrize("features_at", ["pre-pool", "post-pool"])
def test_training_step_with_the_classifier(features_at):
    """One step as the trainer does it: the classifier holds no IFM parameter, the
    optimizer updates both, and the regularizer's dH enters the classifier's backward
    with the sign of L = L_clf - lam * sum F (checked by a directional derivative of L
    over every parameter of both, in float64), with H_l taken before or after pooling."""
    rng = np.random.default_rng(0)
    model = Classifier(rng=rng, dtype=np.float64, features_at=features_at)
    reg = IFMRegularizer(list(model.channels), lam=2.0, samples=4, rng=rng, hidden=SMALL,
                         dtype=np.float64)
    assert not any("ifm" in k for k in model.state_dict())
    x = rng.standard_normal((3, 32, 32, 2))
    y = np.array([3, 7])

    def total_loss():
        loss, _ = softmax_cross_entropy(model.forward(x), y)
        return float(loss + reg.loss(reg.forward(model.features, np.random.default_rng(5))))

    loss, dlogits = softmax_cross_entropy(model.forward(x), y)
    reg.forward(model.features, np.random.default_rng(5))
    model.backward(dlogits, reg.backward())
    trainable = Container([("clf", model), ("ifm", reg)])
    originals = {k: p.copy() for k, p in trainable.params.items()}
    # eps small: 65k LeakyReLU units and max-pool windows must not switch
    check_directional(f"training step, classifier + IFMRegularizer, {features_at} "
                      "(random direction, eps 1e-7)", total_loss, dict(trainable.params),
                      dict(trainable.grads), np.random.default_rng(1), eps=1e-7)
    SGD(move_into_flat_buffers(trainable), lr=0.1).step(trainable.grads)
    assert not np.array_equal(reg.params["ifm12.0.W"], originals["ifm.ifm12.0.W"])
    assert not np.array_equal(model.params["block1.0.W"], originals["clf.block1.0.W"])


def per_pair_names(reg, state, prefix=""):
    """The inverse of ``stack_pair_entries``: each stack "D.k" split into "ifm12.k", ..."""
    out = {}
    for key, value in state.items():
        if key.startswith(prefix + "D."):
            rest = key[len(prefix) + 2:]
            out.update({f"{prefix}{name}.{rest}": value[l] for l, name in enumerate(reg.names)})
        else:
            out[key] = value
    return out


def test_a_checkpoint_with_each_critic_on_its_own_loads():
    """Checkpoints written while each D_l had its own arrays ("ifm/ifm12.3.W", and the
    optimizer's "velocity/ifm.ifm12.3.W") load into the stacks, to the same state."""
    from experiment.trainer import Trainer
    from test_train_gpu_parity import config, tiny_dataset
    cfg = config(batch_size=8, samples=4)
    dataset = tiny_dataset(np.random.default_rng(0), n=16)
    trained = Trainer(cfg, dataset, "cpu")
    order = trained.epoch_order(1)
    trained.train_step(trained.batch_index(order, 0), 1, 0)      # momentum now nonzero
    arrays = trained.checkpoint_arrays()
    reg = trained.regularizer
    old = per_pair_names(reg, arrays, "ifm/")
    old = per_pair_names(reg, old, "opt/velocity/ifm.")
    assert "ifm/ifm23.3.W" in old and "opt/velocity/ifm.ifm34.7.gamma" in old
    assert not any(".D." in k or "/D." in k for k in old)
    fresh = Trainer(cfg, dataset, "cpu")
    fresh.load_checkpoint_arrays({k: np.array(v) for k, v in old.items()})
    loaded = fresh.checkpoint_arrays()
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    with pytest.raises(ValueError, match="pairs"):
        fresh.load_checkpoint_arrays({k: v for k, v in old.items() if k != "ifm/ifm23.3.W"})


def test_runs_group_consecutive_pairs_of_one_form():
    from ifm.block import PairPositions
    from ifm.regularizer import runs

    def form(S, n_joint, groups=None):
        return PairPositions(np.zeros((4, S), np.int32), n_joint, groups)

    assert runs([form(8, 4)] * 3) == [slice(0, 3)]
    assert runs([form(8, 4), form(8, 4), form(6, 3)]) == [slice(0, 2), slice(2, 3)]
    assert runs([form(8, 4), form(8, 2), form(8, 4)]) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert runs([form(8, 4, (2, 2)), form(8, 4, (1, 4))]) == [slice(0, 1), slice(1, 2)]


def test_bad_members_groups_and_dF_are_refused():
    critic = Critic(3, "jsd", SMALL, np.random.default_rng(0), np.float64)
    a = np.random.default_rng(1).standard_normal((2, SMALL[0], 12))
    with pytest.raises(ValueError, match="consecutive"):
        critic.forward(a, 6, members=slice(0, 3, 2))
    with pytest.raises(ValueError, match="infonce"):
        critic.forward(a, 6, groups=(2, 3), members=slice(0, 2))
    reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], samples=3,
                         rng=np.random.default_rng(0), hidden=SMALL, dtype=np.float64)
    rng = np.random.default_rng(2)
    reg.forward([rng.standard_normal((c, 8 >> i, 8 >> i, 2)) for i, c in enumerate([3, 4, 5])],
                rng)
    with pytest.raises(ValueError, match="one per pair"):
        reg.backward(np.ones(1))
    assert len(reg.backward(np.ones(2))) == 3


def test_lam_d_weighs_only_the_critics_objective():
    """lam_d = 1 with lam = 30: each D_l's gradient is that of -F_l, the CNN's dH still that
    of -30 * F_l; lam_d = lam is the default (D descends the CNN's L)."""
    grads, dH = {}, {}
    for lam_d in (None, 30.0, 1.0):
        reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], lam=30.0, lam_d=lam_d,
                             samples=4, rng=np.random.default_rng(0), hidden=SMALL,
                             dtype=np.float64)
        rng = np.random.default_rng(2)
        H = [rng.standard_normal(s) for s in ((3, 8, 8, 4), (4, 4, 4, 4), (5, 2, 2, 4))]
        reg.forward(H, np.random.default_rng(5))
        dH[lam_d] = reg.backward()
        grads[lam_d] = {k: g.copy() for k, g in reg.grads.items()}
    for key in grads[None]:
        np.testing.assert_array_equal(grads[30.0][key], grads[None][key])
        # (a bias before batch norm has a zero gradient, up to rounding: hence the atol)
        np.testing.assert_allclose(grads[1.0][key], grads[None][key] / 30, rtol=1e-12,
                                   atol=1e-15, err_msg=key)
    for a, b in zip(dH[1.0], dH[None]):     # sums of terms that cancel: atol at the scale
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13 * np.abs(b).max())
    assert any(np.abs(g).max() > 0 for g in grads[1.0].values())
    with pytest.raises(ValueError, match="lam_d must be positive"):
        IFMRegularizer([3, 4], pairs=[(1, 2)], lam_d=0.0)
