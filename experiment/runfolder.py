"""The run folder: every file a run writes, each written atomically.

    config.json        every setting, the seed, data provenance, software versions
    history.csv        one row per finished epoch
    checkpoint.npz     everything needed to resume (model, D, optimizer, progress)
    best_digit.npz     classifier with the best validation digit accuracy
    best_texture.npz   classifier with the best validation texture accuracy
    report.json        Table 3 rows for this run (accuracies as fractions)
    report.md          the same as a markdown table, beside the paper's numbers

Checkpoints are .npz files of plain arrays; the progress record is a JSON
string stored as a 0-d unicode array, so nothing is ever unpickled.
"""
import csv
import io
import json
import os

import numpy as np

from nn.serialization import load_npz, save_npz_atomic

CONFIG, HISTORY, CHECKPOINT = "config.json", "history.csv", "checkpoint.npz"
BEST = {"best_digit": "best_digit.npz", "best_texture": "best_texture.npz"}
REPORT_JSON, REPORT_MD = "report.json", "report.md"


def write_text_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class RunFolder:
    def __init__(self, path):
        self.path = os.fspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self, name):
        return os.path.exists(self.file(name))

    def create(self):
        os.makedirs(self.path, exist_ok=True)

    # config -----------------------------------------------------------------
    def save_config(self, config):
        write_json(self.file(CONFIG), config)

    def load_config(self):
        return read_json(self.file(CONFIG))

    # checkpoint -------------------------------------------------------------
    def save_checkpoint(self, arrays, progress):
        """arrays: flat dict name -> array; progress: JSON-serialisable dict."""
        payload = dict(arrays)
        payload["progress_json"] = np.array(json.dumps(progress))
        save_npz_atomic(self.file(CHECKPOINT), payload)

    def load_checkpoint(self):
        arrays = load_npz(self.file(CHECKPOINT))
        progress = json.loads(str(arrays.pop("progress_json")))
        return arrays, progress

    # history ----------------------------------------------------------------
    def read_history(self):
        if not self.exists(HISTORY):
            return []
        with open(self.file(HISTORY), newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def write_history(self, rows, columns):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
        write_text_atomic(self.file(HISTORY), buf.getvalue())

    # best models and report -------------------------------------------------
    def save_best(self, which, state):
        save_npz_atomic(self.file(BEST[which]), state)

    def load_best(self, which):
        return load_npz(self.file(BEST[which]))

    def save_report(self, report, markdown):
        write_json(self.file(REPORT_JSON), report)
        write_text_atomic(self.file(REPORT_MD), markdown)
