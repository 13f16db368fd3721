"""train.py: parse the command, check it against the run folder, build, fit, report.

    main: parse (settings.py) -> RunFolder.start, the resume rules (runfolder.py)
          -> the data (dataset.py) -> Trainer (trainer.py) -> RunFolder.begin
          -> Trainer.fit -> final_report (report.py)

The epochs, validations and the choice of the best models are Trainer.fit's;
what a checkpoint records of them is runfolder.Progress. The run folder is
held (run.lock) before anything in it is read; nothing is written into it
until the flags, the data and, on --resume, the saved config and checkpoint
have all been checked, so a refused command leaves the folder as it was (a
folder made for the lock is removed again).
"""
import os
import shlex
import signal
import sys

import numpy as np

from nn.backend import gpu_unavailable_reason
from nn.cpu.allocator import retain_freed_memory
from nn.cpu.parallel import available_cores, use_cores
from nn.serialization import load_state_into

from . import report as table3
from . import saved_model
from .cli import UsageError, quiet_on_closed_pipe
from .dataset import load_dataset
from .memory import too_large
from .progress import format_seconds
from .runfolder import CHECKPOINT, RunFolder, RunFolderError, restart_command
from .settings import command, default_out, flag, parse, plural, program, settings_text
from .trainer import NonFiniteLoss, Trainer


@quiet_on_closed_pipe
def main(argv=None):
    command_line = parse(argv)
    retain_freed_memory()      # CPU speed only, see nn/cpu/allocator.py
    folder = RunFolder(command_line.out if command_line.out is not None
                       else default_out(command_line.config))
    phase, interrupt = "setup", None
    try:
        if os.path.exists(folder.path) and not os.path.isdir(folder.path):
            raise UsageError(f"--out {folder.path} is a file, not a folder; choose another --out")
        with folder.held(command()):
            start = folder.start(command_line)
            cpu_cores = use_device(start, command_line.resume)
            dataset = load_dataset(start.config, start.sources)
            changes = folder.data_changes(start, dataset, command_line.allow_data_change)
            reason = too_large(start.config, dataset, start.device)
            if reason:
                raise UsageError(reason)
            trainer = build_trainer(folder, start, dataset)
            model_record = saved_model.record(start.config, dataset, start.sources, None)
            phase = "writing"               # everything is checked: only now is the folder written
            folder.begin(start, command_line, dataset, changes, cpu_cores, model_record)
            print(banner(folder, start, trainer, cpu_cores), file=sys.stderr)
            phase = "training"
            # Overflow in a diverging run is caught by the NaN guard, which names the step;
            # NumPy's warnings would only print first, without saying where.
            with InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore"):
                status = trainer.fit(folder, start.progress, start.best_states, model_record,
                                     command_line.quiet, interrupt,
                                     log=lambda m: print(m, file=sys.stderr))
            if status == "interrupted":
                return 128 + interrupt.signum
            phase = "report"
            markdown = final_report(trainer, folder, start.config, start.progress)
    except (UsageError, RunFolderError) as err:
        print(f"{program()}: error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLoss as err:
        kept = ("The run's last checkpoint before it is kept" if folder.exists(CHECKPOINT) else
                "It stopped before its first checkpoint, so none was written")
        print(f"{program()}: {err}; the run stopped. {kept}. Try a smaller --lr or --lam, or "
              f"another --estimator, in a new run (--restart, or another --out)",
              file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"\n{program()}: {interrupted(phase, folder)}", file=sys.stderr)
        return 128 + (interrupt.signum if interrupt else signal.SIGINT)
    print(markdown)
    print(f"wall time {format_seconds(start.progress.wall_seconds)}; "
          f"results in {folder.path}", file=sys.stderr)
    return 0


def use_device(start, resuming):
    """Check the run's device and give its NumPy work its CPU cores; the cores in use (None
    on the GPU)."""
    reason = gpu_unavailable_reason() if start.device == "gpu" else None
    if reason and resuming:
        raise UsageError("--resume: the run was made on the GPU and continues only where CuPy "
                         f"sees a CUDA device ({reason}); or start a new run with --restart")
    if reason:
        raise UsageError(f"--device gpu: {reason}; or use --device cpu")
    if start.device != "cpu":
        return None
    if resuming and start.cpu_cores and start.cpu_cores > available_cores():
        print(f"{program()}: warning: the run was made with {start.cpu_cores} CPU cores and "
              f"this process may use {available_cores()}; it keeps {start.cpu_cores} threads, "
              "so that it rounds as before, but runs slower than it could", file=sys.stderr)
    return use_cores(start.cpu_cores)


def build_trainer(folder, start, dataset):
    """The run's Trainer, with the checkpoint it resumes from loaded."""
    trainer = Trainer(start.config, dataset, start.device)
    if start.arrays is not None:
        try:
            trainer.load_checkpoint_arrays(start.arrays)
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"--resume: {folder.file(CHECKPOINT)} does not fit the run's "
                             f"model ({err}); start the run over with: "
                             f"{restart_command(start.saved)}")
    return trainer


def banner(folder, start, trainer, cpu_cores):
    """The line that opens a run: its folder, method, seed, device and steps."""
    cores = f" ({cpu_cores} cores)" if cpu_cores else ""
    fresh = " (no checkpoint yet: from the beginning)" if (
        start.saved is not None and start.arrays is None) else ""
    return (f"run folder {folder.path}: {start.config.method}, seed {start.config.seed}, "
            f"device {start.device}{cores}, {trainer.train_data.n} training images, "
            f"{trainer.plan.steps_per_epoch} steps per epoch{fresh}")


class InterruptFlag:
    """First Ctrl-C (SIGINT) or SIGTERM: finish the current step, save, exit.

    A second signal stops at once. SIGTERM is what a batch system or a closing
    session sends, so a run killed that way also resumes mid-epoch. The exit
    status is the shell's convention, 128 + the signal: 130 for SIGINT, 143 for
    SIGTERM.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT     # the first signal received (exit status 128 + it)
        self._previous = {}

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signum = True, signum
        print("\ninterrupt: finishing this step, then saving a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr)

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


def interrupted(phase, folder):
    """What a KeyboardInterrupt in ``phase`` left, and how to go on."""
    if phase == "setup":
        return "interrupted before anything was written; the run folder was not changed"
    if phase == "report":
        return ("stopped while writing the report; training is complete. Write the report "
                f"with: {command()} --out {shlex.quote(folder.path)} --resume")
    return f"stopped at once by a second interrupt. {folder.resume_hint()}"


def final_report(trainer, folder, config, progress):
    """Evaluate both selected checkpoints on test; write report.json and report.md; the
    markdown."""
    rows, steps = {}, trainer.plan.steps_per_epoch
    for which in ("best_digit", "best_texture"):
        load_state_into(trainer.method.model.state_dict(), folder.load_best(which),
                        folder.file(f"{which}.npz"))
        test_digit, test_texture = trainer.evaluate(trainer.test_data)
        best = progress.best[which]
        rows[which] = {"epoch": best["epoch"], "step": best.get("step", steps),
                       "val_digit_acc": best["val_digit_acc"],
                       "val_texture_acc": best["val_texture_acc"],
                       "test_digit_acc": test_digit, "test_texture_acc": test_texture}
    report = {"method": config.method, "steps_per_epoch": steps, "rows": rows}
    differ = [f"{flag(k)} {settings_text(v)}" for k, v in config.main_differences()
              if k != "epochs"]
    settings_line = ("Settings that differ from the main configuration of the method: "
                     + ", ".join(differ) + ".\n\n") if differ else ""
    markdown = (f"# Table 3 for this run ({config.method}, seed {config.seed}, "
                f"{plural(progress.epoch_done, 'epoch')}, device {trainer.device})\n\n"
                + settings_line +
                "Accuracies in %. Test accuracy of the checkpoint with the best validation digit "
                "accuracy (`_digit`) and with the best validation texture accuracy (`_texture`). "
                f"{table3.paper_note()}\n\n"
                + table3.run_table_markdown(report))
    folder.save_report(report, markdown)
    return markdown
