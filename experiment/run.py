"""train.py's driver: check the command and the run folder, build the trainer, fit, report.

The epochs, validations and the choice of the best models are Trainer.fit's
(experiment/trainer.py); what a checkpoint records of them is runfolder.Progress.

The run folder is held (run.lock) before anything in it is read; nothing is
written into it until the flags, the data and, on --resume, the saved config
and checkpoint have all been checked, so a refused command leaves the folder
as it was (a folder it made for the lock is removed again). A run folder holding config.json but no
checkpoint (stopped before its first save) resumes from the beginning with
its saved settings.
"""
import os
import shlex
import signal
import sys
import time

import numpy as np

from ice.trainer import IceTrainer
from nn.cpu.allocator import retain_freed_memory
from nn.cpu.parallel import available_cores, use_cores

from . import report as table3
from . import saved_model
from .cli import quiet_on_closed_pipe
from .memory import too_large
from .progress import format_seconds
from .provenance import code_version, data_changes, software_versions
from .runfolder import CHECKPOINT, CONFIG, Progress, RunFolder, RunFolderError, split_best
from .settings import (EXPERIMENT_KEYS, RESUMABLE_KEYS, command, default_out, flag,
                       main_differences, old_run_settings, parse, program, settings_from_args,
                       settings_text)
from .trainer import NonFiniteLoss, Trainer


class UsageError(Exception):
    """A problem the user fixes by changing the command line or the run folder."""


def method_of(cfg):
    return cfg["method"]


def build_trainer(cfg, dataset, device):
    """The Trainer of the run's method (IceTrainer for ice-firevnet)."""
    return (IceTrainer if cfg["method"] == "ice-firevnet" else Trainer)(cfg, dataset, device)


def plural(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def new_run_settings(folder, args):
    """Settings of a new run; the folder must hold no run unless --restart clears it."""
    if folder.holds_run() and not args.restart:
        early = (" (stopped before its first checkpoint)"
                 if not folder.exists(CHECKPOINT) else "")
        raise UsageError(f"--out {folder.path} already holds a run{early}; pass --resume to "
                         "continue it, --restart to clear it and start a new run there with "
                         "these flags, or choose another --out")
    return settings_from_args(args)


def resume_settings(folder, args):
    """(settings, saved config, checkpoint or None) of the run in ``folder``.

    The flags typed with --resume must agree with the run; --epochs may add
    epochs. Device and CPU cores change float rounding, so they stay the run's.
    """
    if not folder.exists(CONFIG):
        fix = ("start a new run there with --restart and the run's flags"
               if folder.exists(CHECKPOINT) else "drop --resume to start a new run there")
        raise UsageError(f"--resume: {folder.path} holds no run to resume (no config.json); "
                         f"{fix}")
    saved = folder.load_config()
    cfg = old_run_settings(saved["settings"])
    given = {**settings_from_args(args), "device": args.device, "cpu_cores": args.cpu_cores}
    run = {**cfg, "device": saved.get("device"), "cpu_cores": saved.get("cpu_cores")}
    fixed = [k for k in (*EXPERIMENT_KEYS, "device", "cpu_cores") if k not in RESUMABLE_KEYS]
    clashes = [k for k in fixed if k in args.explicit and given[k] != run[k]
               and not (k == "cpu_cores" and run[k] is None)]      # None: not a CPU run
    if clashes:
        detail = ", ".join(f"{flag(k)} {given[k]!r} (the run has {run[k]!r})" for k in clashes)
        raise UsageError(f"--resume: the run in {folder.path} was made with other settings: "
                         f"{detail}; a resume continues the same computation, so only --epochs "
                         "(to add epochs), --quiet and the data locations (--mnist-dir, "
                         "--textures, --cache-dir; their content is checked) may be given anew. "
                         "Drop those flags, or start a new run with another --out")
    if "epochs" in args.explicit:
        if args.epochs < cfg["epochs"]:
            raise UsageError(f"--resume --epochs {args.epochs}: the run in {folder.path} is set "
                             f"to {plural(cfg['epochs'], 'epoch')}; a resume may add epochs, "
                             "not remove them (its best checkpoints are already saved)")
        cfg["epochs"] = args.epochs
    try:
        checkpoint = folder.load_checkpoint() if folder.exists(CHECKPOINT) else None
    except RunFolderError as err:
        raise UsageError(f"--resume: {err}; the run cannot continue from it. Start it over "
                         f"with: {restart_command(saved)}")
    return cfg, saved, checkpoint


def restart_command(saved):
    """The run's own command with --restart: it clears the folder and starts the run anew."""
    words = shlex.split(saved.get("command", f"{command()} --out DIR FLAGS"))
    return shlex.join(words + ([] if "--restart" in words else ["--restart"]))


SOURCES = ("mnist_dir", "textures", "cache_dir")


def data_sources(args, saved=None):
    """Where the data come from, resolved: the flags typed, else the run's record, else the
    environment variables and defaults (data/paths.py). A resume thus finds the data a run
    started from $IFM_MNIST_DIR / $IFM_TEXTURES without them; their content is checked."""
    from data import resolve_cache_dir, resolve_mnist_dir, resolve_textures
    saved = saved or {}
    # Runs saved before "sources" was recorded: the flags they were given.
    recorded = saved.get("sources") or {k: saved.get("settings", {}).get(k) for k in SOURCES}
    chosen = {k: getattr(args, k) if k in args.explicit else recorded.get(k) for k in SOURCES}
    mnist_dir = resolve_mnist_dir(chosen["mnist_dir"])
    return {"mnist_dir": None if mnist_dir is None else str(mnist_dir),
            "textures": resolve_textures(chosen["textures"]),
            "cache_dir": str(resolve_cache_dir(chosen["cache_dir"]))}


def load_dataset(cfg, sources):
    from data import DataError, load_shifted_mnist
    try:
        return load_shifted_mnist(mnist_dir=sources["mnist_dir"], textures=sources["textures"],
                                  seed=cfg["data_seed"], cache_dir=sources["cache_dir"],
                                  crops=cfg["texture_crops"], composite=cfg["composite"])
    except DataError as err:
        raise UsageError(str(err))


def check_same_data(folder, saved, dataset, allowed):
    """The data changes since the run started ([] if none); refused unless ``allowed``."""
    changes = data_changes(saved["data"], dataset.provenance)
    if changes and not allowed:
        raise UsageError(f"--resume: the data differ from those the run in {folder.path} was "
                         f"trained on: {'; '.join(changes)}. Restore them (config.json's "
                         "\"data\" record names every file and checksum), or pass "
                         "--allow-data-change to continue on the new data (recorded in "
                         "config.json)")
    return changes


def check_device(device, resuming=False):
    from nn.backend import gpu_unavailable_reason
    reason = gpu_unavailable_reason() if device == "gpu" else None
    if reason and resuming:
        raise UsageError("--resume: the run was made on the GPU and continues only where CuPy "
                         f"sees a CUDA device ({reason}); or start a new run with --restart")
    if reason:
        raise UsageError(f"--device gpu: {reason}; or use --device cpu")


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


def final_report(trainer, folder, cfg, progress):
    """Evaluate both selected checkpoints on test; write report.json and report.md."""
    from nn.serialization import load_state_into
    rows, steps = {}, trainer.steps_per_epoch()
    for which in ("best_digit", "best_texture"):
        load_state_into(trainer.model.state_dict(), folder.load_best(which),
                        folder.file(f"{which}.npz"))
        test_digit, test_texture = trainer.evaluate(trainer.test_data)
        best = progress.best[which]
        rows[which] = {"epoch": best["epoch"], "step": best.get("step", steps),
                       "val_digit_acc": best["val_digit_acc"],
                       "val_texture_acc": best["val_texture_acc"],
                       "test_digit_acc": test_digit, "test_texture_acc": test_texture}
    report = {"method": method_of(cfg), "steps_per_epoch": steps, "rows": rows}
    differ = [f"{flag(k)} {settings_text(v)}" for k, v in main_differences(cfg)
              if k != "epochs"]
    settings_line = ("Settings that differ from the main configuration of the method: "
                     + ", ".join(differ) + ".\n\n") if differ else ""
    markdown = (f"# Table 3 for this run ({method_of(cfg)}, seed {cfg['seed']}, "
                f"{plural(progress.epoch_done, 'epoch')}, device {trainer.device})\n\n"
                + settings_line +
                "Accuracies in %. Test accuracy of the checkpoint with the best validation digit "
                "accuracy (`_digit`) and with the best validation texture accuracy (`_texture`). "
                f"{table3.paper_note()}\n\n"
                + table3.run_table_markdown(report))
    folder.save_report(report, markdown)
    return report, markdown


@quiet_on_closed_pipe
def main(argv=None):
    args = parse(argv)
    retain_freed_memory()      # CPU speed only, see nn/cpu/allocator.py
    try:
        return run(args)
    except (UsageError, RunFolderError) as err:
        print(f"{program()}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # run() answers those after its first write
        print(f"\n{program()}: interrupted before anything was written; the run folder was "
              "not changed", file=sys.stderr)
        return 130


def run(args):
    """Hold the run folder first (made if missing), then check, build and train in it: a
    second process is refused before it reads anything there, so what it decides cannot
    go stale while it builds the data. A folder this command made and left empty (a
    refused command) is removed again (RunFolder.held)."""
    folder = RunFolder(args.out if args.out is not None else default_out(args))
    if os.path.exists(folder.path) and not os.path.isdir(folder.path):
        raise UsageError(f"--out {folder.path} is a file, not a folder; choose another --out")
    with folder.held(command()):
        return run_in(folder, args)


def run_in(folder, args):
    """run() with ``folder`` held."""
    if args.resume:
        cfg, saved, checkpoint = resume_settings(folder, args)
        device, cpu_cores = saved.get("device", args.device), saved.get("cpu_cores")
        if cpu_cores and cpu_cores > available_cores():
            print(f"{program()}: warning: the run was made with {cpu_cores} CPU cores and this "
                  f"process may use {available_cores()}; it keeps {cpu_cores} threads, so that "
                  "it rounds as before, but runs slower than it could", file=sys.stderr)
    else:
        cfg, saved, checkpoint = new_run_settings(folder, args), None, None
        device, cpu_cores = args.device, args.cpu_cores
    check_device(device, resuming=args.resume)
    cpu_cores = use_cores(cpu_cores) if device == "cpu" else None
    sources = data_sources(args, saved)
    dataset = load_dataset(cfg, sources)
    changes = check_same_data(folder, saved, dataset, args.allow_data_change) if saved else []
    reason = too_large(cfg, dataset, device)
    if reason:
        raise UsageError(reason)
    trainer = build_trainer(cfg, dataset, device)
    model_record = saved_model.record(cfg, dataset, sources, None)
    progress, best_states = Progress(), {}
    if checkpoint is not None:
        arrays, progress = checkpoint
        arrays, best_states = split_best(arrays)
        try:
            trainer.load_checkpoint_arrays(arrays)
        except (ValueError, KeyError, TypeError) as err:
            raise UsageError(f"--resume: {folder.file(CHECKPOINT)} does not fit the run's "
                             f"model ({err}); start the run over with: {restart_command(saved)}")

    # Everything is checked: only now is the run folder written.
    phase, interrupt = "setup", None
    try:
        if args.restart:
            folder.clear()
        folder.save_config(record(args, cfg, saved, dataset, device, cpu_cores, checkpoint,
                                  changes, sources))
        for which, state in best_states.items():   # the best models this checkpoint knows
            folder.save_best(which, state,
                             {**model_record, "selected": progress.best[which]})
        if progress.epoch_done < cfg["epochs"]:
            folder.remove_report()                  # a report of fewer epochs is stale
        on = f" ({cpu_cores} cores)" if cpu_cores else ""
        start = "" if saved is None or checkpoint else " (no checkpoint yet: from the beginning)"
        print(f"run folder {folder.path}: {method_of(cfg)}, seed {cfg['seed']}, device "
              f"{device}{on}, {trainer.train_data.n} training images, "
              f"{trainer.steps_per_epoch()} steps per epoch{start}", file=sys.stderr)
        phase = "training"
        # Overflow in a diverging run is caught by the NaN guard, which names the step;
        # NumPy's warnings would only print first, without saying where.
        with InterruptFlag() as interrupt, np.errstate(over="ignore", invalid="ignore"):
            status = trainer.fit(folder, progress, best_states, model_record, args.quiet,
                                 interrupt, log=lambda m: print(m, file=sys.stderr))
        if status == "interrupted":
            return 128 + interrupt.signum
        phase = "report"
        report, markdown = final_report(trainer, folder, cfg, progress)
    except NonFiniteLoss as err:
        kept = ("The run's last checkpoint before it is kept" if folder.exists(CHECKPOINT) else
                "It stopped before its first checkpoint, so none was written")
        print(f"{program()}: {err}; the run stopped. {kept}. Try a smaller --lr or --lam, or "
              f"another --estimator, in a new run (--restart, or another --out)",
              file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        if phase == "report":
            why = ("stopped while writing the report; training is complete. Write the report "
                   f"with: {command()} --out {shlex.quote(folder.path)} --resume")
        else:
            why = f"stopped at once by a second interrupt. {resume_hint(folder)}"
        print(f"\n{program()}: {why}", file=sys.stderr)
        return 128 + (interrupt.signum if interrupt else signal.SIGINT)
    print(markdown)
    print(f"wall time {format_seconds(progress.wall_seconds)}; "
          f"results in {folder.path}", file=sys.stderr)
    return 0


def record(args, cfg, saved, dataset, device, cpu_cores, checkpoint, changes, sources):
    """config.json: a new run's full record, or the saved one with this resume appended."""
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    if saved is None:
        return {"settings": cfg, "method": method_of(cfg), "device": device,
                "cpu_cores": cpu_cores, "sources": sources, "data": dataset.provenance,
                "software": software_versions(device), "code": code_version(),
                "command": shlex.join([*command().split(), *args.argv]), "started": now}
    config = {**saved, "settings": cfg, "sources": sources}
    entry = {"at": now, "device": device, "cpu_cores": cpu_cores,
             "from": "checkpoint" if checkpoint else "the beginning (no checkpoint)",
             "software": software_versions(device), "code": code_version()}
    if sources != saved.get("sources"):
        entry["sources_before"] = saved.get("sources")
    if changes:
        entry["data_changed"] = changes
        entry["data_before"] = saved["data"]
        config["data"] = dataset.provenance
    config["resumed"] = [*saved.get("resumed", []), entry]
    return config


def resume_hint(folder):
    resume = f"{command()} --out {shlex.quote(folder.path)} --resume"
    if folder.exists(CHECKPOINT):
        return f"The last checkpoint is intact; continue with: {resume}"
    if folder.exists(CONFIG):
        return ("It stopped before its first checkpoint; start it again from the beginning, "
                f"with its saved settings, with: {resume}")
    return "Nothing was written yet."
