"""ice/objective.py: the iCE fi-RevNet latents, objective and nuisance classifier (float64).

- z_s and z_n: which latent values they hold, and dL/dz_n and dL/dz_s routed back;
- the gradient of L = bpd + CE(BN(z_s), y) - beta CE(D_nc(z_n), y_enc) with respect to
  the images and every parameter of the encoder, against central differences, on a
  3-level flow of 3x8x8 images (z (48, 1, 1, N)) of two steps per level (with one,
  nothing the logits read passes through a coupling), dropout on and redrawn alike;
- CE(logits) alone reaches the couplings, and the check fails when that path is cut;
- how many input values each logit depends on: one at depth 1, most at depth 2;
- D_nc's inner steps fit z_n held fixed, and the label permutation.
"""
from types import SimpleNamespace

import gradcheck
import numpy as np
import pytest
from gradcheck import check_directional

from experiment.config import Config
from experiment.trainer import Trainer
from ice import objective
from ice.method import IceMethod, encoder_lr
from nn.backend import xp_for
from training import StepPlan
from nn.flat import move_into_flat_buffers
from nn.optim import Adamax

N = 6


def tiny(seed=0, p=0.2, depth=2):
    rng = np.random.default_rng(seed)
    model = objective.IceModel(3, levels=3, depth=depth, hidden=3, p=p,
                         rng=np.random.default_rng(seed + 1), dtype=np.float64)
    x = rng.standard_normal((3, 8, 8, 16))
    model.initialize(x)
    for k in model.flow.params:              # away from the zero (and data-dependent) init
        zero_init = k.rsplit(".", 1)[-1] in ("W3", "b3", "logs3") or ".coupling." not in k \
            and ".actnorm." not in k
        p_ = model.flow.params[k]
        p_[...] = p_ + (0.05 if zero_init else 0.2) * rng.standard_normal(p_.shape)
    critic = objective.NuisanceClassifier(192, hidden=5, p=p, rng=np.random.default_rng(seed + 2),
                                    dtype=np.float64)
    return model, critic


def test_logits_and_nuisance_hold_the_authors_entries(rng):
    z = rng.standard_normal((48, 4, 4, N))
    zs = [rng.standard_normal((6, 16, 16, N)), rng.standard_normal((12, 8, 8, N))]
    np.testing.assert_array_equal(objective.logit_view(z), z[:10, 2, 2])
    z_n = objective.nuisance(z, zs)
    assert z_n.shape == (3072, N)
    filled = z.copy()
    filled[:10, 2, 2] = 0.1
    np.testing.assert_array_equal(z_n, np.concatenate([filled.reshape(-1, N),
                                                       zs[0].reshape(-1, N), zs[1].reshape(-1, N)]))
    dz_n, dz_s = rng.standard_normal((3072, N)), rng.standard_normal((10, N))
    dz, dzs = objective.nuisance_backward(dz_n, dz_s, z, zs)
    expected = dz_n[:768].reshape(z.shape).copy()
    expected[:10, 2, 2] = dz_s
    np.testing.assert_array_equal(dz, expected)
    np.testing.assert_array_equal(dzs[0], dz_n[768:2304].reshape(zs[0].shape))
    np.testing.assert_array_equal(dzs[1], dz_n[2304:].reshape(zs[1].shape))


def test_dequantization_and_its_log_det():
    images = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(objective.dequantize(images, 0.5).ravel(), [1 / 256 - 1, 1 - 1 / 256],
                               rtol=1e-6)
    assert objective.input_log_det(3072) == 3072 * np.log(2)


def test_ice_objective_gradients():
    rng = np.random.default_rng(7)
    model, critic = tiny()
    x = rng.standard_normal((3, 8, 8, N))
    y = rng.integers(0, 10, N)
    y_enc = rng.permutation(y)
    beta, log_det = 0.3, objective.input_log_det(192)

    def forward():
        model.flow.set_dropout_rng(np.random.default_rng(11))   # the same masks every time
        critic.set_dropout_rng(np.random.default_rng(12))
        logits = model.forward(x)
        return objective.ice_objective(model, critic, logits, y, y_enc, beta, log_det)

    terms, up = forward()
    assert terms.loss.shape == () and float(terms.bpd) > 0
    dx = objective.ice_backward(model, critic, up)
    keys = list(model.params)
    grads = {k: model.grads[k].copy() for k in keys}

    def loss():
        return forward()[0].loss

    check_directional("iCE objective: dL/dx", loss, {"x": x}, {"x": dx}, rng)
    for group in ("flow.", "bn."):
        chosen = [k for k in keys if k.startswith(group)]
        check_directional(f"iCE objective: dL/d{group}*", loss,
                          {k: model.params[k] for k in chosen}, {k: grads[k] for k in chosen},
                          rng)
    for k in ("bn.gamma", "bn.beta"):                           # the logits' BN on its own
        check_directional("iCE objective: dL/dparams (per array)", loss, {k: model.params[k]},
                          {k: grads[k]}, rng, eps=1e-5)


def logits_ce_gradients(model, critic, x, y):
    """(loss() of CE(BN(z_s), y) alone, {coupling parameter: its analytic gradient})."""
    def forward():
        model.flow.set_dropout_rng(np.random.default_rng(11))
        critic.set_dropout_rng(np.random.default_rng(12))
        logits = model.forward(x)
        return objective.ice_objective(model, critic, logits, y, y, 0.0, 0.0)

    terms, (dlogits, dcritic, dlogp) = forward()
    objective.ice_backward(model, critic, (dlogits, np.zeros_like(dcritic), np.zeros_like(dlogp)))
    keys = [k for k in model.params if ".coupling." in k]
    return (lambda: forward()[0].ce_logits), {k: model.grads[k].copy() for k in keys}


def test_the_logits_cross_entropy_reaches_the_couplings():
    # The CE -> coupling path, checked on its own: at depth 2 half the coupling arrays
    # receive CE's gradient, those of each level's first step (layers 1, 5, 9: the half
    # it changes is the half the second step's reversal moves to the front, which the
    # split keeps), and it matches central differences; at depth 1 none does.
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((3, 8, 8, N)), rng.integers(0, 10, N)
    model, critic = tiny()
    loss, grads = logits_ce_gradients(model, critic, x, y)
    reached = [k for k, g in grads.items() if np.abs(g).max() > 0]
    assert len(reached) == len(grads) // 2 == 27
    assert {k.split(".coupling.")[0] for k in reached} == {"flow.1", "flow.5", "flow.9"}
    check_directional("iCE CE(logits): dL/dcouplings", loss,
                      {k: model.params[k] for k in reached}, {k: grads[k] for k in reached},
                      rng, eps=1e-5)
    shallow, shallow_critic = tiny(depth=1)
    _, grads = logits_ce_gradients(shallow, shallow_critic, x, y)
    assert all(np.abs(g).max() == 0 for g in grads.values())


def test_the_check_fails_when_the_cross_entropy_path_is_cut(monkeypatch):
    # The same check with dL/dz_s dropped on its way into the flow must fail.
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((3, 8, 8, N)), rng.integers(0, 10, N)
    model, critic = tiny()
    original = objective.nuisance_backward
    monkeypatch.setattr(objective, "nuisance_backward",
                        lambda dz_n, dz_s, z, zs: original(dz_n, 0 * dz_s, z, zs))
    loss, grads = logits_ce_gradients(model, critic, x, y)
    keys = [k for k in grads if k.startswith("flow.1.coupling.")]
    with pytest.raises(AssertionError, match="directional derivative"):
        check_directional("iCE CE(logits), path cut", loss,
                          {k: model.params[k] for k in keys}, {k: grads[k] for k in keys},
                          rng)
    gradcheck.MAX_ERRORS.pop("iCE CE(logits), path cut")     # not a check of the code


@pytest.mark.parametrize("depth, inputs", [(1, 1), (2, 169), (3, 192)])
def test_how_many_input_values_each_logit_depends_on(depth, inputs):
    # z_s before its batch norm, image 0 of 2, against each of its 192 input values moved
    # alone: at depth 1 each logit is an affine map of one pixel value (what the splits
    # keep never went through a coupling); two steps mix most of the image, three all.
    rng = np.random.default_rng(0)
    model, _ = tiny(p=0.0, depth=depth)
    x = rng.standard_normal((3, 8, 8, 2))

    def z_s(x):
        model.forward(x)
        return objective.logit_view(model.out.z)[:, 0].copy()

    base, depends = z_s(x), np.zeros((10, x.size // 2), bool)
    for i in range(depends.shape[1]):
        moved = x.copy()
        moved.reshape(-1, 2)[i, 0] += 1e-3
        depends[:, i] = np.abs(z_s(moved) - base) > 1e-12
    assert list(depends.sum(axis=1)) == [inputs] * 10


def test_the_nuisance_term_reaches_only_the_latents_it_reads():
    # beta = 0 and beta != 0 differ in dL/dz_n alone; the logit entries of z_n carry nothing.
    rng = np.random.default_rng(3)
    model, critic = tiny(p=0.0)
    x = rng.standard_normal((3, 8, 8, N))
    y = rng.integers(0, 10, N)
    logits = model.forward(x)
    _, (dlogits, dcritic, _) = objective.ice_objective(model, critic, logits, y, y, 0.5, 0.0)
    dz_n = critic.backward(dcritic)
    dz, _ = objective.nuisance_backward(dz_n, np.zeros((10, N)), model.out.z, model.out.zs)
    assert np.all(objective.logit_view(dz) == 0) and np.abs(dz).max() > 0


def test_inner_steps_fit_the_fixed_nuisance_and_leave_it_alone():
    rng = np.random.default_rng(5)
    critic = objective.NuisanceClassifier(40, hidden=16, p=0.1, rng=np.random.default_rng(1))
    optimizer = Adamax(move_into_flat_buffers(critic), lr=1e-2)
    z_n = rng.standard_normal((40, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    kept = z_n.copy()
    critic.set_dropout_rng(np.random.default_rng(0))
    first = objective.fit_nuisance(critic, optimizer, z_n, y, 1)
    last = objective.fit_nuisance(critic, optimizer, z_n, y, 60)
    assert optimizer.step_count == 61
    assert float(last) < 0.5 * float(first)
    np.testing.assert_array_equal(z_n, kept)


def ice_method(labels, device="cpu"):
    """An IceMethod of 60 training images (8x8) in batches of 30, for encoder_labels."""
    config = Config(method="ice-firevnet", seed=4, ice_labels=labels, batch_size=30,
                    flow_depth=2)
    train = SimpleNamespace(images=np.zeros((60, 3, 8, 8), np.uint8))
    return IceMethod(config, train, device, StepPlan(60, 30, 4, xp_for(device)))


def test_encoder_labels_true_or_shuffled_per_step(rng):
    y = np.arange(10).repeat(3)
    np.testing.assert_array_equal(ice_method("true").encoder_labels(y, 1, 0), y)
    shuffled = ice_method("shuffled")
    a = shuffled.encoder_labels(y, 1, 0)
    assert sorted(a) == sorted(y) and np.any(a != y)
    np.testing.assert_array_equal(shuffled.encoder_labels(y, 1, 0), a)     # (seed, e, s) only
    assert np.any(shuffled.encoder_labels(y, 1, 1) != a)
    np.testing.assert_array_equal(ice_method("shuffled").encoder_labels(y, 1, 1),
                                  shuffled.encoder_labels(y, 1, 1))
    odd = y[:7]                       # a batch the schedule does not have: drawn on the spot
    np.testing.assert_array_equal(shuffled.encoder_labels(odd, 1, 0),
                                  odd[np.random.default_rng([4, 6, 1, 0]).permutation(7)])


def test_shuffled_labels_are_uploaded_once_per_epoch():
    # The permutations of a whole epoch go to the device in one copy, at its first step;
    # no sort runs on the device (CuPy's sort waits for it).
    import cupy_standin
    y = np.arange(10).repeat(3)
    with cupy_standin.installed() as cp:
        method = ice_method("shuffled", "gpu")
        y_device = cp.asarray(y)
        with cupy_standin.counting() as first:
            a = method.encoder_labels(y_device, 1, 0)
        with cupy_standin.counting() as later:
            b = method.encoder_labels(y_device, 1, 1)
        assert (first.uploads, later.uploads) == (1, 0)
        assert first.host_reads == later.host_reads == 0
        np.testing.assert_array_equal(cp.asnumpy(a), ice_method("shuffled").encoder_labels(y, 1, 0))
        np.testing.assert_array_equal(cp.asnumpy(b), ice_method("shuffled").encoder_labels(y, 1, 1))


def test_encoder_lr_follows_the_authors_schedule():
    assert [encoder_lr(1.0, e) for e in (1, 61, 62, 121, 122, 161, 162, 200)] == \
        [1.0, 1.0, 0.2, 0.2, 0.2 ** 2, 0.2 ** 2, 0.2 ** 3, 0.2 ** 3]


def test_epoch_diagnostics_measure_each_term_and_leave_training_as_it_was():
    from scripts.step_fingerprint import config, tiny_dataset
    settings = config(method="ice-firevnet", batch_size=16, flow_depth=2, ice_beta=0.0)
    measured, plain = (Trainer(settings, tiny_dataset(np.random.default_rng(0)), "cpu")
                       for _ in range(2))
    for trainer in (measured, plain):
        trainer.method.train_step(trainer.plan.batch_index(trainer.plan.epoch_order(1), 0), 1, 0)
    norms = measured.method.epoch_diagnostics(1)
    assert list(norms) == ["grad_nll", "grad_ce_logits", "grad_nuisance"]
    assert norms["grad_nll"] > 0 and norms["grad_ce_logits"] > 0
    assert norms["grad_nuisance"] == 0                          # beta = 0: the term is off
    for trainer in (measured, plain):
        trainer.method.train_step(trainer.plan.batch_index(trainer.plan.epoch_order(1), 1), 1, 1)
    for key, value in plain.method.model.state_dict().items():
        np.testing.assert_array_equal(measured.method.model.state_dict()[key], value, err_msg=key)
