"""IFM pair positions drawn and uploaded for many steps at once (ClassifierMethod.ifm_positions).

Each step's positions must be those of its own generator [seed, 2, epoch, step]
(as when every step drew its own), whatever steps ran before it in the
process: a run resumed mid-epoch replays an uninterrupted one exactly.
"""
import numpy as np
import pytest
from test_train_gpu_parity import config, tiny_dataset

import experiment.methods as methods_module
from experiment.trainer import Trainer


def trainer(n, **changes):
    return Trainer(config(**changes), tiny_dataset(np.random.default_rng(0), n=n), "cpu")


def per_step_draw(t, epoch, step, shapes):
    return t.method.regularizer.draw(shapes, np.random.default_rng([t.config.seed, 2, epoch, step]))


def assert_same_positions(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g.columns, e.columns)
        assert (g.n_joint, g.groups) == (e.n_joint, e.groups)


@pytest.mark.parametrize("changes", [{}, {"estimator": "infonce", "marginal": "batch"}])
@pytest.mark.parametrize("ahead, uploads", [(64, 1), (2, 2)])
def test_uploaded_positions_are_the_per_step_draws(changes, ahead, uploads, monkeypatch):
    """33 images in batches of 16: steps of 16, 16 and a lone image folded into 2;
    all three steps in one upload per pair, or (2 steps ahead) steps 0-1 and 2."""
    monkeypatch.setattr(methods_module, "POSITIONS_AHEAD", ahead)
    t = trainer(33, **changes)
    order = t.plan.epoch_order(2)
    assert [t.plan.batch_size_at(s) for s in range(3)] == [16, 16, 2]
    bases = set()
    for step in range(3):
        index = t.plan.batch_index(order, step)
        assert t.plan.batch_size_at(step) == index.shape[0]
        t.method.model.forward(t.train_data.inputs(index))
        shapes = [H.shape for H in t.method.model.features]
        got = t.method.ifm_positions(2, step, t.method.model.features)
        assert_same_positions(got, per_step_draw(t, 2, step, shapes))
        bases.update(id(p.columns.base) for p in got)
    assert len(bases) == 3 * uploads, "one array per pair and upload"


def test_a_batch_off_the_schedule_draws_its_own_positions():
    t = trainer(48)
    index = t.plan.batch_index(t.plan.epoch_order(1), 0)[:5]
    t.method.model.forward(t.train_data.inputs(index))
    shapes = [H.shape for H in t.method.model.features]
    assert_same_positions(t.method.ifm_positions(1, 0, t.method.model.features),
                          per_step_draw(t, 1, 0, shapes))


def state(t):
    return {k: np.array(v) for k, v in t.checkpoint_arrays().items()}


def test_resume_mid_epoch_replays_the_uninterrupted_steps():
    """40 images in batches of 16 (16, 16, 8): a run stopped after step 0 and resumed
    in a fresh trainer gives the uninterrupted run's steps 1 and 2 bit for bit."""
    whole = trainer(40)
    order = whole.plan.epoch_order(1)
    outputs, after_step_0 = [], None
    for step in range(3):
        outputs.append(whole.method.train_step(whole.plan.batch_index(order, step), 1, step))
        if step == 0:
            after_step_0 = state(whole)
    resumed = trainer(40)
    resumed.load_checkpoint_arrays(after_step_0)
    order = resumed.plan.epoch_order(1)
    for step in (1, 2):
        index = resumed.plan.batch_index(order, step)
        loss, _, F_values, total = resumed.method.train_step(index, 1, step)
        w_loss, _, w_F, w_total = outputs[step]
        assert loss == w_loss and total == w_total
        assert [float(f) for f in F_values] == [float(f) for f in w_F]
    final, expected = state(resumed), state(whole)
    assert final.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)
