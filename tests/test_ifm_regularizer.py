"""IFMRegularizer as a module: each D_l under its own name, the stacks behind them (the
speed path) against each D_l alone (the formula), modes, state, old checkpoints, the flat
buffers, and the training step."""
import numpy as np
import pytest
from gradcheck import check_directional

from experiment.classifier import Classifier
from ifm import IFMRegularizer, PairPositions
from ifm.stacked import runs
from nn import SGD, softmax_cross_entropy
from nn.flat import move_into_flat_buffers
from nn.module import Container

SMALL = (8, 6, 5)
D_KEYS = ["0.W", "0.b", "1.gamma", "1.beta", "3.W", "3.b", "4.gamma", "4.beta",
          "6.W", "6.b", "7.gamma", "7.beta", "9.W", "9.b"]


def maps(N=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((3, 8, 8, N)).astype(dtype),
            rng.standard_normal((4, 4, 4, N)).astype(dtype))


def one_pair(**options):
    return IFMRegularizer.one_pair(3, 4, **options)


def features(channels, N=2, seed=2, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((c, 8 >> i, 8 >> i, N)).astype(dtype)
            for i, c in enumerate(channels)]


def test_each_D_l_has_its_own_names_and_views_the_stacks():
    reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], rng=np.random.default_rng(0))
    keys = [f"{n}.{k}" for n in ("D12", "D23") for k in D_KEYS]
    assert list(reg.params) == keys and list(reg.grads) == keys
    shapes = {k: p.shape for k, p in reg.params.items()}
    assert shapes["D12.0.W"] == (256, 7) and shapes["D23.0.W"] == (256, 9)
    assert shapes["D23.1.gamma"] == (256,) and shapes["D23.3.W"] == (128, 256)
    assert shapes["D12.6.W"] == (64, 128) and shapes["D12.9.W"] == (1, 64)
    assert all(p.dtype == np.float32 for p in reg.params.values())
    assert set(reg.buffers) == {f"{n}.{i}.{b}" for n in ("D12", "D23") for i in (1, 4, 7)
                                for b in ("running_mean", "running_var")}
    # the speed path's storage: layer 3 of both D_l is one (2, 128, 256) stack
    stack = reg.stack.layers[2]
    assert stack.params["W"].shape == (2, 128, 256)
    for l, name in enumerate(reg.names):
        for store in ("params", "grads"):
            assert np.shares_memory(getattr(reg, store)[f"{name}.3.W"],
                                    getattr(stack, store)["W"][l])
        assert np.shares_memory(reg.buffers[f"{name}.4.running_var"],
                                reg.stack.layers[3].buffers["running_var"][l])


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


def test_writing_into_a_param_reaches_both_paths():
    reg = one_pair(samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    [F0] = reg.forward([h_low, h_high], np.random.default_rng(1))
    reg.params["D12.9.b"][...] += np.float32(3.0)
    assert reg.stack.layers[-1].params["b"][0, 0] == pytest.approx(3.0)
    [F_stack] = reg.forward([h_low, h_high], np.random.default_rng(1))
    reg.stacked = False
    [F_alone] = reg.forward([h_low, h_high], np.random.default_rng(1))
    assert F_stack != F0 and F_alone == pytest.approx(F_stack, rel=1e-6)


def test_eq5_is_assembled_in_loss():
    reg = one_pair(lam=2.5, samples=3, rng=np.random.default_rng(0), dtype=np.float64)
    F = reg.forward(list(maps(dtype=np.float64)), np.random.default_rng(1))
    assert reg.loss(0.75, F) == 0.75 - 2.5 * F[0]


STACK_CASES = [("jsd", None, 3), ("dv", 0.3, 3), ("infonce", None, 3), ("paper-eq4", None, 3),
               ("jsd", None, "all"), ("dv", 0.3, "all")]


@pytest.mark.parametrize("estimator, dv_ema, samples", STACK_CASES)
def test_the_stack_equals_each_D_l_alone(estimator, dv_ema, samples):
    """Pairs (1,2), (2,3), (3,4) run as the stack (K = 3: one run of all three; K = all:
    three runs of one) and each D_l alone give the same F, dH, gradients and running
    statistics (and DV moving averages), twice, so that the states carry over."""
    channels = [3, 4, 5, 2]
    H = features(channels)
    dF = np.random.default_rng(3).standard_normal(3)

    def regularizer(stacked):
        return IFMRegularizer(channels, samples=samples, estimator=estimator, dv_ema=dv_ema,
                              rng=np.random.default_rng(0), hidden=SMALL, dtype=np.float64,
                              stacked=stacked)

    stack, alone = regularizer(True), regularizer(False)
    for step in range(2):
        positions = stack.draw([h.shape for h in H], np.random.default_rng(step))
        F = stack.forward(H, positions=positions)
        F_alone = alone.forward(H, positions=positions)
        dH, dH_alone = stack.backward(dF), alone.backward(dF)
        np.testing.assert_allclose(F_alone, F, rtol=1e-12, atol=1e-14)
        for a, b in zip(dH_alone, dH):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        for store in ("grads", "buffers"):
            for key, value in getattr(stack, store).items():
                np.testing.assert_allclose(getattr(alone, store)[key], value, rtol=1e-12,
                                           atol=1e-14, err_msg=key)
    assert len(stack.stack._runs) == (1 if samples == 3 else 3)


def test_train_eval_and_astype():
    reg = IFMRegularizer([3, 4, 5], samples=4, pairs=[(1, 2), (2, 3)], estimator="dv",
                         dv_ema=0.1, rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.eval() is reg
    assert not reg.stack.estimate.training and not reg.discriminators[0].estimate.training
    assert all(not layer.training for layer in reg.stack.layers)
    reg.train()
    assert all(layer.training for layer in reg.stack.layers)
    assert reg.state_dict()["D23.dv.log_ema"].shape == ()
    assert "D12.4.running_var" in reg.state_dict()
    reg.astype(np.float64).to("cpu")
    assert all(p.dtype == np.float64 for p in reg.params.values())
    assert all(b.dtype == np.float64 for b in reg.buffers.values())
    assert np.shares_memory(reg.buffers["D23.dv.weight"], reg.stack.estimate.buffers["weight"])
    assert np.shares_memory(reg.params["D23.6.W"], reg.stack.layers[5].params["W"])


def test_eval_mode_uses_running_statistics():
    block = one_pair(samples=5, rng=np.random.default_rng(0))
    h_low, h_high = maps()
    block.forward([h_low, h_high], np.random.default_rng(1))
    rm = block.buffers["D12.1.running_mean"].copy()
    block.eval()
    block.forward([h_low, h_high], np.random.default_rng(1))
    np.testing.assert_array_equal(block.buffers["D12.1.running_mean"], rm)


def test_regularizer_keys_and_validation():
    reg = IFMRegularizer([32, 64, 128, 128], rng=np.random.default_rng(0), hidden=SMALL)
    assert reg.names == ["D12", "D23", "D34"]
    assert [(D.pair_layer.c_low, D.pair_layer.c_high) for D in reg.discriminators] == [
        (32, 64), (64, 128), (128, 128)]
    assert set(reg.params) == {f"{n}.{k}" for n in reg.names for k in D_KEYS}
    assert set(reg.grads) == set(reg.params)
    for pairs in ([(1, 3)], [(0, 1)], [(4, 5)], [(1, 2), (1, 2)]):
        with pytest.raises(ValueError):
            IFMRegularizer([32, 64, 128, 128], pairs=pairs)


def test_in_flat_buffers_the_stacks_are_spans_and_an_update_reaches_both_paths():
    """move_into_flat_buffers lays each stack's members out next to each other: the stack
    is a view of P (and of G); an optimizer step then changes what the stack and each D_l
    read alike, and moving the regularizer afterwards detaches it (reattach)."""
    reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], samples=3, hidden=SMALL,
                         rng=np.random.default_rng(0), dtype=np.float64)
    before = {k: p.copy() for k, p in reg.params.items()}
    flat = move_into_flat_buffers(reg)
    (P,), (G,) = flat.P, flat.G
    for layer in reg.stack.layers:
        for key in layer.params:
            assert np.shares_memory(layer.params[key], P) and np.shares_memory(layer.grads[key], G)
    for key, value in before.items():
        assert reg.params[key] is flat.params[key]
        np.testing.assert_array_equal(reg.params[key], value, err_msg=key)
    H = features([3, 4, 5])
    reg.forward(H, np.random.default_rng(1))
    reg.backward()
    opt = SGD(flat, lr=0.1)
    opt.step()
    assert not np.array_equal(reg.params["D23.3.W"], before["D23.3.W"])
    np.testing.assert_array_equal(reg.stack.layers[2].params["W"][1], reg.params["D23.3.W"])
    reg.astype(np.float32)
    with pytest.raises(RuntimeError, match="reattach"):
        opt.step()


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
        return float(reg.loss(loss, reg.forward(model.features, np.random.default_rng(5))))

    loss, dlogits = softmax_cross_entropy(model.forward(x), y)
    reg.forward(model.features, np.random.default_rng(5))
    model.backward(dlogits, reg.backward())
    trainable = Container([("clf", model), ("ifm", reg)])
    originals = {k: p.copy() for k, p in trainable.params.items()}
    # eps small: 65k LeakyReLU units and max-pool windows must not switch
    check_directional(f"training step, classifier + IFMRegularizer, {features_at} "
                      "(random direction, eps 1e-7)", total_loss, dict(trainable.params),
                      dict(trainable.grads), np.random.default_rng(1), eps=1e-7)
    SGD(move_into_flat_buffers(trainable), lr=0.1).step()
    assert not np.array_equal(reg.params["D12.0.W"], originals["ifm.D12.0.W"])
    assert not np.array_equal(model.params["block1.0.W"], originals["clf.block1.0.W"])


def old_formats(reg, arrays):
    """``arrays`` (a checkpoint's) as the two older formats wrote them: "stacked" (the pair
    layers as "ifm/ifm12.0.W", the rest as stacks "ifm/D.3.W" (G, ...); the optimizer's
    "velocity/ifm.D.3.W" likewise) and "one by one" (every D_l entry as "ifm/ifm12.3.W")."""
    stacked, per_pair, stacks = {}, {}, {}
    for key, value in arrays.items():
        group, _, rest = key.rpartition("ifm/") if key.startswith("ifm/") else key.partition(
            "/ifm.")
        prefix = key[:len(key) - len(rest)]
        name, _, inner = rest.partition(".")
        if name not in reg.names:
            stacked[key] = per_pair[key] = value
            continue
        old = f"{prefix}ifm{name[1:]}.{inner}"
        per_pair[old] = value
        if inner.startswith("0."):
            stacked[old] = value
        else:
            stacks.setdefault(f"{prefix}D.{inner}", []).append(value)
    stacked.update({key: np.stack(values) for key, values in stacks.items()})
    return {"stacked": stacked, "one by one": per_pair}


@pytest.mark.parametrize("form", ["stacked", "one by one"])
def test_checkpoints_of_older_formats_load(form):
    """Checkpoints written while the critics were stacks ("ifm/D.3.W") or each D_l had its
    own arrays ("ifm/ifm12.3.W", and the optimizer's "velocity/ifm.ifm12.3.W") load, to
    the same state; a stack of the wrong length is refused in one line."""
    from experiment.trainer import Trainer
    from test_train_gpu_parity import config, tiny_dataset
    cfg = config(batch_size=8, samples=4)
    dataset = tiny_dataset(np.random.default_rng(0), n=16)
    trained = Trainer(cfg, dataset, "cpu")
    order = trained.plan.epoch_order(1)
    trained.method.train_step(trained.plan.batch_index(order, 0), 1, 0)     # momentum now nonzero
    arrays = {k: np.array(v) for k, v in trained.checkpoint_arrays().items()}
    assert "ifm/D23.3.W" in arrays and "opt/velocity/ifm.D34.7.gamma" in arrays
    old = old_formats(trained.method.regularizer, arrays)[form]
    assert not any("D12" in k or "D23" in k or "D34" in k for k in old)
    assert ("ifm/D.3.W" in old) == (form == "stacked")
    fresh = Trainer(cfg, dataset, "cpu")
    fresh.load_checkpoint_arrays(old)
    loaded = fresh.checkpoint_arrays()
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    if form == "stacked":
        with pytest.raises(ValueError, match="a stack of 2 critics, this run has 3"):
            fresh.load_checkpoint_arrays({**old, "ifm/D.3.W": old["ifm/D.3.W"][:2]})
    else:
        with pytest.raises(ValueError, match=r"missing \['D23.3.W'\]"):
            fresh.load_checkpoint_arrays({k: v for k, v in old.items() if k != "ifm/ifm23.3.W"})


def test_runs_group_consecutive_pairs_of_one_form():
    def form(S, n_joint, groups=None):
        return PairPositions(np.zeros((3, S), np.int32), n_joint, groups)

    assert runs([form(8, 4)] * 3) == [slice(0, 3)]
    assert runs([form(8, 4), form(8, 4), form(6, 3)]) == [slice(0, 2), slice(2, 3)]
    assert runs([form(8, 4), form(8, 2), form(8, 4)]) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert runs([form(8, 4, (2, 2)), form(8, 4, (1, 4))]) == [slice(0, 1), slice(1, 2)]


@pytest.mark.parametrize("stacked", [True, False])
def test_bad_groups_and_dF_are_refused(stacked):
    reg = IFMRegularizer([3, 4, 5], pairs=[(1, 2), (2, 3)], samples=3, stacked=stacked,
                         rng=np.random.default_rng(0), hidden=SMALL, dtype=np.float64)
    H = features([3, 4, 5])
    positions = reg.draw([h.shape for h in H], np.random.default_rng(2))
    with pytest.raises(ValueError, match="infonce"):
        reg.forward(H, positions=[p._replace(groups=(2, 3)) for p in positions])
    with pytest.raises(ValueError, match="exactly one"):
        reg.forward(H)
    reg.forward(H, positions=positions)
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
