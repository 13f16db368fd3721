"""What a training method is and what it is given: the interface between a method and the loop.

    Method          what a method supplies (method.py): build, a training step, evaluation
                    inputs, what a checkpoint holds; baseline and IFM
                    (experiment/methods.py) and iCE fi-RevNet (ice/method.py) implement it
    StepResult      what a training step hands back
    StepPlan        the batches of an epoch (steps.py), which the loop and the methods share
    DrawnAhead      per-step random draws made ahead, uploaded in one copy, sliced per step
    build_optimizer the optimizer the run's settings name

The loop itself (epochs, validation, checkpoints, the run folder) is
experiment/trainer.py's Trainer, which this package does not know: a method
package imports this one and nn, never the harness.
"""
from .method import Method, StepResult, build_optimizer
from .steps import DrawnAhead, StepPlan, upload_joined

__all__ = ["DrawnAhead", "Method", "StepPlan", "StepResult", "build_optimizer", "upload_joined"]
