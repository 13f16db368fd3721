"""experiment/ice.py: the iCE fi-RevNet latents, objective and nuisance classifier (float64).

- z_s and z_n: which latent values they hold, and dL/dz_n and dL/dz_s routed back;
- the gradient of L = bpd + CE(BN(z_s), y) - beta CE(D_nc(z_n), y_enc) with respect to
  the images and every parameter of the encoder, against central differences, on a
  3-level flow of 3x8x8 images (z (48, 1, 1, N)), dropout on and redrawn alike;
- D_nc's inner steps fit z_n held fixed, and the label permutation.
"""
import numpy as np
from gradcheck import check_directional, upstream

from experiment import ice
from experiment.ice_trainer import IceTrainer, encoder_lr
from nn.optim import Adamax

N = 6


def tiny(seed=0, p=0.2):
    rng = np.random.default_rng(seed)
    model = ice.IceModel(3, levels=3, depth=1, hidden=3, p=p, rng=np.random.default_rng(seed + 1),
                         dtype=np.float64)
    x = rng.standard_normal((3, 8, 8, 16))
    model.initialize(x)
    for k in model.flow.params:              # away from the zero (and data-dependent) init
        zero_init = k.rsplit(".", 1)[-1] in ("W3", "b3", "logs3") or ".coupling." not in k \
            and ".actnorm." not in k
        p_ = model.flow.params[k]
        p_[...] = p_ + (0.05 if zero_init else 0.2) * rng.standard_normal(p_.shape)
    critic = ice.NuisanceClassifier(192, hidden=5, p=p, rng=np.random.default_rng(seed + 2),
                                    dtype=np.float64)
    return model, critic


def test_logits_and_nuisance_hold_the_authors_entries(rng):
    z = rng.standard_normal((48, 4, 4, N))
    zs = [rng.standard_normal((6, 16, 16, N)), rng.standard_normal((12, 8, 8, N))]
    np.testing.assert_array_equal(ice.logit_view(z), z[:10, 2, 2])
    z_n = ice.nuisance(z, zs)
    assert z_n.shape == (3072, N)
    filled = z.copy()
    filled[:10, 2, 2] = 0.1
    np.testing.assert_array_equal(z_n, np.concatenate([filled.reshape(-1, N),
                                                       zs[0].reshape(-1, N), zs[1].reshape(-1, N)]))
    dz_n, dz_s = rng.standard_normal((3072, N)), rng.standard_normal((10, N))
    dz, dzs = ice.nuisance_backward(dz_n, dz_s, z, zs)
    expected = dz_n[:768].reshape(z.shape).copy()
    expected[:10, 2, 2] = dz_s
    np.testing.assert_array_equal(dz, expected)
    np.testing.assert_array_equal(dzs[0], dz_n[768:2304].reshape(zs[0].shape))
    np.testing.assert_array_equal(dzs[1], dz_n[2304:].reshape(zs[1].shape))


def test_dequantization_and_its_log_det():
    images = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1)
    np.testing.assert_allclose(ice.dequantize(images, 0.5).ravel(), [1 / 256 - 1, 1 - 1 / 256],
                               rtol=1e-6)
    assert ice.input_log_det(3072) == 3072 * np.log(2)


def test_ice_objective_gradients():
    rng = np.random.default_rng(7)
    model, critic = tiny()
    x = rng.standard_normal((3, 8, 8, N))
    y = rng.integers(0, 10, N)
    y_enc = rng.permutation(y)
    beta, log_det = 0.3, ice.input_log_det(192)

    def forward():
        model.flow.set_dropout_rng(np.random.default_rng(11))   # the same masks every time
        critic.reseed(np.random.default_rng(12))
        logits = model.forward(x)
        return ice.ice_objective(model, critic, logits, y, y_enc, beta, log_det)

    terms, up = forward()
    assert terms.loss.shape == () and float(terms.bpd) > 0
    dx = ice.ice_backward(model, critic, up)
    keys = list(model.params)
    grads = {k: model.grads[k].copy() for k in keys}

    def loss():
        return forward()[0].loss

    check_directional("iCE objective: dL/dx", loss, {"x": x}, {"x": dx}, rng)
    for group in ("flow.", "bn."):
        chosen = [k for k in keys if k.startswith(group)]
        check_directional(f"iCE objective: dL/d{group}*", loss,
                          {k: model.params[k] for k in chosen}, {k: grads[k] for k in chosen},
                          rng, eps=1e-5)
    for k in ("bn.gamma", "bn.beta"):                           # the logits' BN on its own
        check_directional("iCE objective: dL/dparams (per array)", loss, {k: model.params[k]},
                          {k: grads[k]}, rng, eps=1e-5)


def test_the_nuisance_term_reaches_only_the_latents_it_reads():
    # beta = 0 and beta != 0 differ in dL/dz_n alone; the logit entries of z_n carry nothing.
    rng = np.random.default_rng(3)
    model, critic = tiny(p=0.0)
    x = rng.standard_normal((3, 8, 8, N))
    y = rng.integers(0, 10, N)
    logits = model.forward(x)
    _, (dlogits, dcritic, _) = ice.ice_objective(model, critic, logits, y, y, 0.5, 0.0)
    dz_n = critic.backward(dcritic)
    dz, _ = ice.nuisance_backward(dz_n, np.zeros((10, N)), model.out.z, model.out.zs)
    assert np.all(ice.logit_view(dz) == 0) and np.abs(dz).max() > 0


def test_inner_steps_fit_the_fixed_nuisance_and_leave_it_alone():
    rng = np.random.default_rng(5)
    critic = ice.NuisanceClassifier(40, hidden=16, p=0.1, rng=np.random.default_rng(1))
    optimizer = Adamax(critic.params, lr=1e-2, grads=critic.grads)
    z_n = rng.standard_normal((40, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    kept = z_n.copy()
    first = ice.fit_nuisance(critic, optimizer, z_n, y, 1, np.random.default_rng(0))
    last = ice.fit_nuisance(critic, optimizer, z_n, y, 60, np.random.default_rng(0))
    assert optimizer.step_count == 61
    assert float(last) < 0.5 * float(first)
    np.testing.assert_array_equal(z_n, kept)


class FakeTrainer(IceTrainer):
    def __init__(self, labels):
        self.cfg = {"seed": 4, "ice_labels": labels}
        self.xp = np


def test_encoder_labels_true_or_shuffled_per_step(rng):
    y = np.arange(10).repeat(3)
    np.testing.assert_array_equal(FakeTrainer("true").encoder_labels(y, 1, 0), y)
    shuffled = FakeTrainer("shuffled")
    a = shuffled.encoder_labels(y, 1, 0)
    assert sorted(a) == sorted(y) and np.any(a != y)
    np.testing.assert_array_equal(shuffled.encoder_labels(y, 1, 0), a)     # (seed, e, s) only
    assert np.any(shuffled.encoder_labels(y, 1, 1) != a)


def test_encoder_lr_follows_the_authors_schedule():
    assert [encoder_lr(1.0, e) for e in (1, 61, 62, 121, 122, 161, 162, 200)] == \
        [1.0, 1.0, 0.2, 0.2, 0.2 ** 2, 0.2 ** 2, 0.2 ** 3, 0.2 ** 3]
