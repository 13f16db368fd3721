"""train.py's driver: set up or resume a run folder, train, select, report."""
import os
import platform
import signal
import sys
import time

import numpy as np

from nn.allocator import retain_freed_memory
from nn.parallel import cores, use_cores

from . import report as table3
from .progress import EpochProgress, format_seconds
from .runfolder import RunFolder
from .settings import EXPERIMENT_KEYS, OLD_RUN_DEFAULTS, parse
from .trainer import EpochAccumulator, NonFiniteLoss, Trainer


class UsageError(Exception):
    """A problem the user fixes by changing the command line or the run folder."""


def method_of(cfg):
    return "ifm" if cfg["ifm"] else "baseline"


def settings_from_args(args):
    cfg = {k: getattr(args, k) for k in EXPERIMENT_KEYS}
    cfg["pairs"] = [list(p) for p in cfg["pairs"]]
    cfg["epochs"] = args.epochs
    return cfg


def resume_settings(folder, args):
    """Settings of the run in ``folder``; typed flags must agree with them."""
    if not (folder.exists("config.json") and folder.exists("checkpoint.npz")):
        raise UsageError(f"--resume: {folder.path} holds no run to resume (config.json and "
                         "checkpoint.npz are needed); drop --resume to start a new run there")
    saved = folder.load_config()
    cfg = {**OLD_RUN_DEFAULTS, **saved["settings"]}
    given = settings_from_args(args)
    clashes = [k for k in EXPERIMENT_KEYS if k in args.explicit and given[k] != cfg[k]]
    if clashes:
        detail = ", ".join(f"--{k.replace('_', '-')} {given[k]!r} (run has {cfg[k]!r})"
                           for k in clashes)
        raise UsageError(f"--resume: the run in {folder.path} was made with other settings: "
                         f"{detail}; only --epochs and --device may change on resume")
    if "epochs" in args.explicit:
        cfg["epochs"] = args.epochs
    return cfg, saved


def load_dataset(cfg, cache_dir):
    from data import DataError, load_shifted_mnist
    try:
        return load_shifted_mnist(mnist_dir=cfg["mnist_dir"], textures=cfg["textures"],
                                  seed=cfg["data_seed"], cache_dir=cache_dir)
    except DataError as err:
        raise UsageError(str(err))


def software_versions():
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import cupy
        versions["cupy"] = cupy.__version__
    except Exception:
        pass
    return versions


class InterruptFlag:
    """First Ctrl-C (SIGINT) or SIGTERM: finish the current step, save, exit.

    A second signal stops at once. SIGTERM is what a batch system or a closing
    session sends, so a run killed that way also resumes mid-epoch.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt: finishing this step, then saving a checkpoint "
              "(Ctrl-C again to stop at once)", file=sys.stderr)

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False


def history_columns(trainer):
    return (["epoch", "train_loss", "train_acc"] + trainer.pair_names
            + ["val_digit_acc", "val_texture_acc", "seconds", "images_per_s"])


def train(trainer, folder, cfg, progress_state, quiet, interrupt, log=print):
    """Run the remaining epochs; returns "done" or "interrupted"."""
    xp = trainer.xp
    history = [r for r in folder.read_history() if int(r["epoch"]) <= progress_state["epoch_done"]]
    columns = history_columns(trainer)
    steps = trainer.steps_per_epoch()
    B = cfg["batch_size"]
    for epoch in range(progress_state["epoch_done"] + 1, cfg["epochs"] + 1):
        accum = EpochAccumulator(xp, len(trainer.pair_names))
        start_step, carried_seconds = 0, 0.0
        if progress_state.get("partial"):
            accum.load_host(progress_state["partial"]["accum"])
            start_step = progress_state["partial"]["next_step"]
            carried_seconds = progress_state["partial"]["seconds"]
            progress_state["partial"] = None
        order = trainer.epoch_order(epoch)
        bar = EpochProgress(epoch, cfg["epochs"], steps, B, start_step, enabled=not quiet)
        t0 = time.perf_counter()
        for step in range(start_step, steps):
            if interrupt.requested:
                accum.check_finite(epoch)
                progress_state["partial"] = {"next_step": step, "accum": accum.to_host(),
                                             "seconds": carried_seconds + time.perf_counter() - t0}
                folder.save_checkpoint(trainer.checkpoint_arrays(), progress_state)
                log(f"saved a checkpoint at epoch {epoch}, step {step}/{steps}; continue with: "
                    f"python train.py --out {folder.path} --resume")
                return "interrupted"
            index = trainer.batch_index(order, step)
            loss, correct, F_values, total = trainer.train_step(index, epoch, step)
            accum.add(step, int(index.shape[0]), loss, correct, F_values, total)
            if bar.due():
                accum.check_finite(epoch)
                bar.show(step + 1, accum.mean_loss())
        accum.check_finite(epoch)
        train_seconds = carried_seconds + time.perf_counter() - t0
        bar.show(steps, accum.mean_loss(), final=True)
        val_digit, val_texture = trainer.evaluate(trainer.val_data)
        seconds = carried_seconds + time.perf_counter() - t0
        host = accum.to_host()
        row = {"epoch": epoch, "train_loss": f"{host['loss'] / host['seen']:.6f}",
               "train_acc": f"{host['correct'] / host['seen']:.6f}",
               "val_digit_acc": f"{val_digit:.6f}", "val_texture_acc": f"{val_texture:.6f}",
               "seconds": f"{seconds:.2f}",
               "images_per_s": f"{host['seen'] / max(train_seconds, 1e-9):.1f}"}
        for name, F in zip(trainer.pair_names, host["F"]):
            row[name] = f"{F / host['steps']:.6f}"
        history.append(row)
        for which, acc in (("best_digit", val_digit), ("best_texture", val_texture)):
            best = progress_state["best"].get(which)
            key = "val_digit_acc" if which == "best_digit" else "val_texture_acc"
            if best is None or acc > best[key]:
                progress_state["best"][which] = {"epoch": epoch, "val_digit_acc": val_digit,
                                                 "val_texture_acc": val_texture}
                folder.save_best(which, trainer.model.state_dict())
        folder.write_history(history, columns)
        progress_state["epoch_done"] = epoch
        progress_state["wall_seconds"] = progress_state.get("wall_seconds", 0.0) + seconds
        folder.save_checkpoint(trainer.checkpoint_arrays(), progress_state)
        F_text = "".join(f" {n} {row[n]}" for n in trainer.pair_names)
        log(f"epoch {epoch}/{cfg['epochs']}: train loss {row['train_loss']} acc "
            f"{float(row['train_acc']):.4f}{F_text} | val digit {val_digit:.4f} texture "
            f"{val_texture:.4f} | {format_seconds(seconds)}")
    return "done"


def final_report(trainer, folder, cfg, progress_state):
    """Evaluate both selected checkpoints on test; write report.json and report.md."""
    from nn.serialization import load_state_into
    rows = {}
    for which in ("best_digit", "best_texture"):
        load_state_into(trainer.model.state_dict(), folder.load_best(which),
                        folder.file(f"{which}.npz"))
        test_digit, test_texture = trainer.evaluate(trainer.test_data)
        best = progress_state["best"][which]
        rows[which] = {"epoch": best["epoch"], "val_digit_acc": best["val_digit_acc"],
                       "val_texture_acc": best["val_texture_acc"],
                       "test_digit_acc": test_digit, "test_texture_acc": test_texture}
    report = {"method": method_of(cfg), "rows": rows}
    markdown = (f"# Table 3 for this run ({method_of(cfg)}, seed {cfg['seed']}, "
                f"{progress_state['epoch_done']} epochs, device {trainer.device})\n\n"
                "Accuracies in %. Test accuracy of the checkpoint with the best validation digit "
                "accuracy (`_digit`) and with the best validation texture accuracy (`_texture`). "
                "The paper's baseline rows are approximate (its text: about 12% / 95%).\n\n"
                + table3.run_table_markdown(report))
    folder.save_report(report, markdown)
    return report, markdown


def main(argv=None):
    args = parse(argv)
    if args.device == "cpu":       # speed only: see nn/allocator.py and nn/parallel.py
        retain_freed_memory()
        use_cores(args.cpu_cores)
    try:
        return run(args)
    except UsageError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


def run(args):
    try:
        from nn.backend import xp_for
        xp_for(args.device)
    except RuntimeError as err:
        raise UsageError(f"--device gpu: {err}")
    method = "ifm" if args.ifm else "baseline"
    folder = RunFolder(args.out or os.path.join("runs", f"{method}-seed{args.seed}"))
    if args.resume:
        cfg, saved = resume_settings(folder, args)
    else:
        if folder.exists("config.json") or folder.exists("checkpoint.npz"):
            raise UsageError(f"--out {folder.path} already holds a run; pass --resume to "
                             "continue it, or choose another --out")
        cfg, saved = settings_from_args(args), None
    dataset = load_dataset(cfg, args.cache_dir)
    folder.create()
    cpu_cores = cores() if args.device == "cpu" else None
    if saved is None:
        config = {"settings": cfg, "method": method_of(cfg), "device": args.device,
                  "cpu_cores": cpu_cores,
                  "data": dataset.provenance, "software": software_versions(),
                  "command": "python train.py " + " ".join(sys.argv[1:]),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    else:
        config = saved
        config["settings"] = cfg
        config.setdefault("resumed", []).append({"at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                 "device": args.device,
                                                 "cpu_cores": cpu_cores})
    folder.save_config(config)

    trainer = Trainer(cfg, dataset, args.device)
    if args.resume:
        arrays, progress_state = folder.load_checkpoint()
        trainer.load_checkpoint_arrays(arrays)
    else:
        progress_state = {"epoch_done": 0, "partial": None, "best": {}, "wall_seconds": 0.0}
    on = f" ({cpu_cores} cores)" if cpu_cores else ""
    print(f"run folder {folder.path}: {method_of(cfg)}, seed {cfg['seed']}, device "
          f"{args.device}{on}, {trainer.train_data.n} training images, "
          f"{trainer.steps_per_epoch()} steps per epoch", file=sys.stderr)
    try:
        with InterruptFlag() as interrupt:
            status = train(trainer, folder, cfg, progress_state, args.quiet, interrupt,
                           log=lambda m: print(m, file=sys.stderr))
    except NonFiniteLoss as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 3
    if status == "interrupted":
        return 130
    report, markdown = final_report(trainer, folder, cfg, progress_state)
    print(markdown)
    print(f"wall time {format_seconds(progress_state['wall_seconds'])}; "
          f"results in {folder.path}", file=sys.stderr)
    return 0
