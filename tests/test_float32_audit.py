"""scripts/float32_audit.py: it finds a float64 array wherever the trainer holds one, and
finds none after real float32 steps of IFM and iCE on the CPU."""
import numpy as np
import pytest

from experiment.methods import ClassifierMethod
from scripts import float32_audit
from scripts.float32_audit import not_float32


def test_finds_floating_arrays_that_are_not_float32_anywhere_in_an_object_graph():
    class Holder:
        pass
    holder = Holder()
    holder.cache = (np.zeros(2, np.float32), {"kept": [np.zeros(3, np.float64)]})
    holder.index = np.arange(3)                      # integers are not floating arrays
    assert not_float32(holder, "h") == [("h.cache[1]['kept'][0]", "float64")]
    holder.cache = (np.zeros(2, np.float16),)
    assert not_float32(holder, "h") == [("h.cache[0]", "float16")]


def test_float32_steps_leave_no_other_floating_array(monkeypatch):
    assert float32_audit.audit("ifm", "cpu") == []
    assert float32_audit.audit("ice-firevnet", "cpu") == []
    # and it would see one: a batch-norm buffer of the classifier in float64
    original = ClassifierMethod.train_step

    def step(self, index, epoch, s):
        self.model.blocks[0][1].buffers["running_var"] = np.ones(32)
        return original(self, index, epoch, s)
    monkeypatch.setattr(ClassifierMethod, "train_step", step)
    found = float32_audit.audit("ifm", "cpu")
    assert found and all(dtype == "float64" for _, dtype in found)


def test_gpu_without_a_gpu_is_a_usage_error(capsys):
    from nn import backend
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    assert float32_audit.main(["--device", "gpu"]) == 2
    assert "--device gpu" in capsys.readouterr().err
