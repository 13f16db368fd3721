"""The run folder: every file a run writes, each written atomically.

    config.json        every setting, the seed, data provenance, software versions,
                       the code's git commit (and whether tracked files were modified)
    history.csv        one row per finished epoch
    evaluations.csv    with --eval-every: every validation (epoch, step, accuracies)
    checkpoint.npz     everything needed to resume (model, D, optimizer, progress)
    best_digit.npz     classifier with the best validation digit accuracy, and what
                       rebuilds and feeds it (experiment/saved_model.py)
    best_texture.npz   the same for the best validation texture accuracy
    report.json        Table 3 rows for this run (accuracies as fractions)
    report.md          the same as a markdown table, beside the paper's numbers
    run.lock           while a process uses the folder: its pid, host and start

Checkpoints are .npz files of plain arrays; the progress record is a JSON
string stored as a 0-d unicode array, so nothing is ever unpickled.

Every failure to write or read one of these files is a RunFolderError naming
the file, the reason and what to do; train.py prints it as a one-line error.

What a command may do with a folder is decided here too (``RunFolder.start``):
a new run only where none is, unless --restart clears it; a resume continues
the saved run exactly, so it takes its settings, device, CPU core count and
data locations from config.json, and only --epochs (to add epochs, not remove
them), --quiet and the data locations (their content is checked,
``RunFolder.data_changes``) may be given anew. A folder holding config.json
but no checkpoint (stopped before its first save) resumes from the beginning
with its saved settings.
"""
import contextlib
import csv
import fcntl
import glob
import io
import json
import os
import shlex
import socket
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple, Optional

import numpy as np

from nn.serialization import load_npz, save_npz_atomic, write_atomic

from .cli import UsageError
from .config import Config
from .dataset import data_sources
from .provenance import code_version, data_changes, software_versions
from .saved_model import split_record, unreadable_npz, with_record
from .settings import command, flag, plural

CONFIG, HISTORY, CHECKPOINT = "config.json", "history.csv", "checkpoint.npz"
EVALUATIONS = "evaluations.csv"
EVALUATION_COLUMNS = ("epoch", "step", "val_digit_acc", "val_texture_acc")
BEST = {"best_digit": "best_digit.npz", "best_texture": "best_texture.npz"}
REPORT_JSON, REPORT_MD = "report.json", "report.md"
LOCK = "run.lock"
RUN_FILES = (CONFIG, HISTORY, EVALUATIONS, CHECKPOINT, *BEST.values(), REPORT_JSON, REPORT_MD)
# The settings a resume may be given anew: --epochs (to add epochs) and the data locations.
RESUMABLE = ("epochs", "mnist_dir", "textures")


class RunFolderError(Exception):
    """A run-folder file that cannot be written or read; the message says what to do."""


def write_text_atomic(path, text):
    write_atomic(path, lambda f: f.write(text), mode="w")


def write_json(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_progress(progress):
    """ValueError unless ``progress`` has the form train.py saves (see Progress)."""
    def fail(what):
        raise ValueError(f"its progress record {what}")
    if not isinstance(progress, dict):
        fail("is not a JSON object")
    if not (isinstance(progress.get("epoch_done"), int) and progress["epoch_done"] >= 0):
        fail("has no epoch_done >= 0")
    best = progress.get("best")
    if not (isinstance(best, dict) and set(best) <= set(BEST)
            and all(isinstance(b, dict) and {"epoch", "val_digit_acc", "val_texture_acc"} <= set(b)
                    for b in best.values())):
        fail("has no valid best record")
    partial = progress.get("partial")
    if partial is not None and not (isinstance(partial, dict)
                                    and {"next_step", "accum", "seconds"} <= set(partial)):
        fail("has an incomplete mid-epoch record")


def with_best(arrays, best_states):
    """checkpoint.npz's arrays: the training state and, under "best_digit/" and
    "best_texture/", the best models (a resume restores exactly those its Progress names)."""
    arrays = dict(arrays)
    for which, state in best_states.items():
        arrays.update({f"{which}/{k}": v for k, v in state.items()})
    return arrays


def split_best(arrays):
    """(training state, {"best_digit": state, ...}) of checkpoint.npz's arrays."""
    rest, best = {}, {}
    for key, value in arrays.items():
        group, _, name = key.partition("/")
        if group in BEST:
            best.setdefault(group, {})[name] = value
        else:
            rest[key] = value
    return rest, best


@dataclass
class Progress:
    """How far a run got: the JSON record a checkpoint holds beside its arrays.

    epoch_done          epochs finished
    partial             an epoch stopped between steps: {"next_step", "accum" (the epoch's
                        running sums), "seconds"}; None at an epoch's end
    best                {"best_digit" | "best_texture": {"epoch", "step", "val_digit_acc",
                        "val_texture_acc"}}: the validations that chose the best models
    wall_seconds        training time so far
    validation_seconds  the last validation's time (the progress line's ETA counts it)
    evaluations         every validation, with --eval-every (evaluations.csv); else None
    """
    epoch_done: int = 0
    partial: Optional[dict] = None
    best: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    validation_seconds: float = 0.0
    evaluations: Optional[list] = None

    @classmethod
    def from_json(cls, record):
        """The Progress of a checkpoint's record (older records lack the later fields)."""
        check_progress(record)
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def to_json(self):
        return {k: v for k, v in asdict(self).items() if v is not None or k == "partial"}


class Start(NamedTuple):
    """What a command runs in its folder (RunFolder.start): a new run, or the run it resumes."""
    config: Config
    device: str
    cpu_cores: Optional[int]            # as asked; None: all cores (a new run), or a GPU run
    sources: dict                       # the data locations, resolved (dataset.data_sources)
    saved: Optional[dict]               # a resumed run's config.json, else None
    arrays: Optional[dict]              # the training state of the checkpoint it resumes from
    progress: Progress                  # how far that checkpoint got (Progress() without one)
    best_states: dict                   # the best models that checkpoint holds


def restart_command(saved):
    """The run's own command with --restart: it clears the folder and starts the run anew."""
    words = shlex.split(saved.get("command", f"{command()} --out DIR FLAGS"))
    return shlex.join(words + ([] if "--restart" in words else ["--restart"]))


class FolderLock:
    """An exclusive flock on <folder>/run.lock, which names its holder. The kernel drops the
    lock when the process ends, however it ends, so a killed run leaves none behind."""

    def __init__(self, path, fd):
        self.path, self.fd = path, fd

    def release(self):
        """Remove the lock file, then let go of it."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def take_lock(path, holder):
    """FolderLock on ``path``, writing ``holder`` (JSON) into it; or the holder's record
    (a dict) when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.read(fd, 65536) or b"{}")
            except ValueError:
                return {}
            finally:
                os.close(fd)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:       # its last holder removed it as we opened it
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(holder).encode())
            return FolderLock(path, fd)
        os.close(fd)


class RunFolder:
    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self, name):
        return os.path.exists(self.file(name))

    def holds_run(self):
        return any(self.exists(name) for name in (CONFIG, CHECKPOINT))

    def create(self):
        self._writing(self.path, lambda: os.makedirs(self.path, exist_ok=True))

    @contextlib.contextmanager
    def held(self, command):
        """The folder locked (``lock``) for a with-block, made first if missing. The lock
        comes before anything in the folder is read, so no other run changes it between
        what this process reads and what it writes. On leaving, the lock is released and
        the folders this made are removed again where they stayed empty (a refused
        command leaves nothing behind)."""
        made, path = [], os.path.abspath(self.path)
        while not os.path.isdir(path) and os.path.dirname(path) != path:
            made.append(path)                   # the missing folders, innermost first
            path = os.path.dirname(path)
        self.create()
        lock = None
        try:
            lock = self.lock(command)
            yield lock
        finally:
            if lock is not None:
                lock.release()
            for path in made:
                try:
                    os.rmdir(path)              # only if empty
                except OSError:
                    break

    def lock(self, command):
        """Hold the folder while a run (or resume) uses it (FolderLock); a RunFolderError
        naming the holder when another process does."""
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": command}
        taken = self._writing(self.file(LOCK), lambda: take_lock(self.file(LOCK), holder))
        if isinstance(taken, FolderLock):
            return taken
        who = (f"process {taken.get('pid', '?')} on {taken.get('host', '?')}, started "
               f"{taken.get('started', '?')}") if taken else "another process"
        raise RunFolderError(f"--out {self.path} is in use by another run ({who}); wait for "
                             "it to finish or stop it (Ctrl-C there saves a checkpoint), or "
                             "choose another --out")

    def clear(self):
        """Delete the run files (and leftover temporary files); nothing else in the folder."""
        names = [self.file(n) for n in RUN_FILES if self.exists(n)]
        names += glob.glob(os.path.join(glob.escape(self.path), "*.tmp-*"))
        for name in names:
            self._writing(name, lambda name=name: os.unlink(name))

    def _writing(self, path, write):
        try:
            return write()
        except OSError as err:
            raise RunFolderError(f"{path}: cannot write it ({err.strerror or err}); free space "
                                 "or fix the permissions there (a run's checkpoint stays "
                                 "whole, so --resume then continues it), or choose another "
                                 "--out") from None

    # config -----------------------------------------------------------------
    def save_config(self, config):
        self._writing(self.file(CONFIG), lambda: write_json(self.file(CONFIG), config))

    def load_config(self):
        try:
            config = read_json(self.file(CONFIG))
            if not isinstance(config.get("settings"), dict):
                raise ValueError("it has no settings record")
            Config.from_json(config["settings"])
            return config
        except (OSError, ValueError, AttributeError, TypeError) as err:
            raise RunFolderError(f"{self.file(CONFIG)}: cannot read it as a run's config "
                                 f"({type(err).__name__}: {err}); start a new run there with "
                                 "--restart and the run's flags, or choose another --out") from None

    # checkpoint -------------------------------------------------------------
    def save_checkpoint(self, arrays, progress):
        """arrays: flat dict name -> array; progress: a Progress."""
        payload = dict(arrays)
        payload["progress_json"] = np.array(json.dumps(progress.to_json()))
        self._writing(self.file(CHECKPOINT),
                      lambda: save_npz_atomic(self.file(CHECKPOINT), payload))

    def load_checkpoint(self):
        """(arrays, Progress) of checkpoint.npz, or a RunFolderError saying why not."""
        path = self.file(CHECKPOINT)
        try:
            arrays = load_npz(path)
            progress = Progress.from_json(json.loads(str(arrays.pop("progress_json"))))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            raise RunFolderError(unreadable_npz(path, err)) from None
        return arrays, progress

    # history ----------------------------------------------------------------
    def read_history(self):
        if not self.exists(HISTORY):
            return []
        with open(self.file(HISTORY), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def write_history(self, rows, columns):
        self._write_csv(HISTORY, rows, columns)

    def write_evaluations(self, rows):
        self._write_csv(EVALUATIONS, rows, EVALUATION_COLUMNS)

    def _write_csv(self, name, rows, columns):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
        self._writing(self.file(name), lambda: write_text_atomic(self.file(name), buf.getvalue()))

    # best models and report -------------------------------------------------
    def save_best(self, which, state, record):
        """best_<which>.npz: the classifier's ``state`` and its saved_model ``record``."""
        path = self.file(BEST[which])
        self._writing(path, lambda: save_npz_atomic(path, with_record(state, record)))

    def load_best(self, which):
        """The classifier state in best_<which>.npz (without its record)."""
        path = self.file(BEST[which])
        try:
            return split_record(load_npz(path))[0]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise RunFolderError(unreadable_npz(path, err)) from None

    def remove_report(self):
        for name in (REPORT_JSON, REPORT_MD):
            if self.exists(name):
                self._writing(self.file(name), lambda name=name: os.unlink(self.file(name)))

    def save_report(self, report, markdown):
        self._writing(self.file(REPORT_JSON), lambda: write_json(self.file(REPORT_JSON), report))
        self._writing(self.file(REPORT_MD),
                      lambda: write_text_atomic(self.file(REPORT_MD), markdown))

    # what a command may do here: the resume rules ---------------------------
    def start(self, command_line):
        """The Start of the run the Command ``command_line`` begins or resumes here; a
        UsageError where the folder does not allow it (module docstring)."""
        if not command_line.resume:
            if self.holds_run() and not command_line.restart:
                early = (" (stopped before its first checkpoint)"
                         if not self.exists(CHECKPOINT) else "")
                raise UsageError(f"--out {self.path} already holds a run{early}; pass --resume "
                                 "to continue it, --restart to clear it and start a new run "
                                 "there with these flags, or choose another --out")
            return Start(command_line.config, command_line.device, command_line.cpu_cores,
                         data_sources(command_line.locations()), None, None, Progress(), {})
        if not self.exists(CONFIG):
            fix = ("start a new run there with --restart and the run's flags"
                   if self.exists(CHECKPOINT) else "drop --resume to start a new run there")
            raise UsageError(f"--resume: {self.path} holds no run to resume (no config.json); "
                             f"{fix}")
        saved = self.load_config()
        config = self.resumed_config(Config.from_json(saved["settings"]), saved, command_line)
        start = Start(config, saved.get("device", command_line.device), saved.get("cpu_cores"),
                      data_sources(command_line.locations(), saved), saved, None, Progress(), {})
        if not self.exists(CHECKPOINT):
            return start
        try:
            arrays, progress = self.load_checkpoint()
        except RunFolderError as err:
            raise UsageError(f"--resume: {err}; the run cannot continue from it. Start it over "
                             f"with: {restart_command(saved)}")
        arrays, best_states = split_best(arrays)
        return start._replace(arrays=arrays, progress=progress, best_states=best_states)

    def resumed_config(self, run, saved, command_line):
        """The Config ``run`` of the saved run, with --epochs if the command adds epochs;
        a UsageError where the command types another setting, device or core count."""
        typed = command_line.typed
        clashes = {k: d for k, d in run.differences(command_line.config).items()
                   if k in typed and k not in RESUMABLE}
        for k in ("device", "cpu_cores"):
            theirs, mine = saved.get(k), getattr(command_line, k)
            if k in typed and mine != theirs and not (k == "cpu_cores" and theirs is None):
                clashes[k] = (theirs, mine)                     # None: not a CPU run
        if clashes:
            detail = ", ".join(f"{flag(k)} {mine!r} (the run has {theirs!r})"
                               for k, (theirs, mine) in clashes.items())
            raise UsageError(f"--resume: the run in {self.path} was made with other settings: "
                             f"{detail}; a resume continues the same computation, so only "
                             "--epochs (to add epochs), --quiet and the data locations "
                             "(--mnist-dir, --textures, --cache-dir; their content is checked) "
                             "may be given anew. Drop those flags, or start a new run with "
                             "another --out")
        if "epochs" not in typed:
            return run
        epochs = command_line.config.epochs
        if epochs < run.epochs:
            raise UsageError(f"--resume --epochs {epochs}: the run in {self.path} is set to "
                             f"{plural(run.epochs, 'epoch')}; a resume may add epochs, not "
                             "remove them (its best checkpoints are already saved)")
        return run.replace(epochs=epochs)

    def data_changes(self, start, dataset, allowed):
        """The changes of ``dataset`` from the data the resumed run trained on ([] if none, or
        for a new run); a UsageError unless ``allowed`` (--allow-data-change)."""
        if start.saved is None:
            return []
        changes = data_changes(start.saved["data"], dataset.provenance)
        if changes and not allowed:
            raise UsageError(f"--resume: the data differ from those the run in {self.path} was "
                             f"trained on: {'; '.join(changes)}. Restore them (config.json's "
                             "\"data\" record names every file and checksum), or pass "
                             "--allow-data-change to continue on the new data (recorded in "
                             "config.json)")
        return changes

    def begin(self, start, command_line, dataset, changes, cpu_cores, model_record):
        """The first writes of a command, once everything is checked: clear the folder
        (--restart), write config.json (a new run's record, or the saved one with this
        resume appended), the best models the checkpoint holds, and remove a report of
        fewer epochs than the run now has."""
        if command_line.restart:
            self.clear()
        self.save_config(config_record(start, command_line, dataset, changes, cpu_cores))
        for which, state in start.best_states.items():
            self.save_best(which, state, {**model_record, "selected": start.progress.best[which]})
        if start.progress.epoch_done < start.config.epochs:
            self.remove_report()

    def resume_hint(self):
        """How to go on after a run in this folder stopped."""
        resume = f"{command()} --out {shlex.quote(self.path)} --resume"
        if self.exists(CHECKPOINT):
            return f"The last checkpoint is intact; continue with: {resume}"
        if self.exists(CONFIG):
            return ("It stopped before its first checkpoint; start it again from the beginning, "
                    f"with its saved settings, with: {resume}")
        return "Nothing was written yet."


def config_record(start, command_line, dataset, changes, cpu_cores):
    """config.json: a new run's full record, or the saved one with this resume appended."""
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    saved, sources = start.saved, start.sources
    if saved is None:
        return {"settings": start.config.to_json(), "method": start.config.method,
                "device": start.device, "cpu_cores": cpu_cores, "sources": sources,
                "data": dataset.provenance, "software": software_versions(start.device),
                "code": code_version(),
                "command": shlex.join([*command().split(), *command_line.argv]), "started": now}
    config = {**saved, "settings": start.config.to_json(), "sources": sources}
    entry = {"at": now, "device": start.device, "cpu_cores": cpu_cores,
             "from": "checkpoint" if start.arrays is not None else "the beginning (no checkpoint)",
             "software": software_versions(start.device), "code": code_version()}
    if sources != saved.get("sources"):
        entry["sources_before"] = saved.get("sources")
    if changes:
        entry["data_changed"] = changes
        entry["data_before"] = saved["data"]
        config["data"] = dataset.provenance
    config["resumed"] = [*saved.get("resumed", []), entry]
    return config
