"""evaluate.py: a selected model's accuracy on a split, or its predictions for image files.

    evaluate.py CHECKPOINT [--split test|val] [--json] [data flags as train.py]
    evaluate.py CHECKPOINT --image FILE [FILE ...] [--json]

CHECKPOINT is a best_digit.npz or best_texture.npz of a run folder; it holds
what rebuilds and feeds the model (experiment/saved_model.py). On a split the
dataset is rebuilt as the run built it (its data seed, texture crops, and its
first --limit-eval images if it used that), from the data locations given
here, else those the run recorded, else the environment and the defaults; data
whose checksums differ from the run's are refused. The accuracies are computed
as train.py computes them for report.json (eval mode, batches of 1000), so
they equal the run's own numbers. With --image each file is read in any size
and mode (PNG, JPEG, BMP, GIF, TIFF, WebP or PPM only, by data/images.py, the
textures' reader), made 8-bit RGB and resized to 32x32 (bilinear), and the
predicted class and its softmax probability are printed; the files are read
and classified IMAGE_BATCH at a time, so memory does not grow with their
number. --json adds one JSON object as the last line. Errors are one line
naming the file or flag, exit status 2.
"""
import json
import os
import sys

import numpy as np

from data import DataError
from data.images import FORMAT_NAMES, read_rgb8
from nn.backend import gpu_unavailable_reason, to_numpy, xp_for
from nn.cpu.parallel import use_cores

from .cli import UsageError, quiet_on_closed_pipe
from .dataset import DeviceSplit, data_sources, load_dataset
from .provenance import data_changes
from .runfolder import BEST, RunFolder
from .saved_model import SavedModelError, load
from .settings import Parser
from .trainer import EVAL_BATCH, accuracies

IMAGE_SIZE = 32
IMAGE_BATCH = EVAL_BATCH    # --image files read and classified at a time


def parse(argv=None):
    p = Parser(
        prog="evaluate.py", description="Accuracy of a run's selected model (best_digit.npz, "
        "best_texture.npz) on a shiftedMNIST split, or its predictions for image files.")
    p.add_argument("checkpoint", help="a best_digit.npz or best_texture.npz of a run folder")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="the split to evaluate (default: test)")
    p.add_argument("--image", nargs="+", metavar="FILE",
                   help="classify these image files instead (PNG, JPEG, BMP, GIF, TIFF, WebP "
                        "or PPM, any size or mode; made 8-bit RGB and resized to 32x32)")
    p.add_argument("--json", action="store_true",
                   help="also print the results as one JSON object on the last line")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help="default: cpu")
    g = p.add_argument_group("data (default: the locations the run recorded)")
    g.add_argument("--mnist-dir", default=None, help="directory with the four MNIST IDX files")
    g.add_argument("--textures", default=None,
                   help="'dtd', 'procedural' or a directory of texture images")
    g.add_argument("--cache-dir", default=None, help="cache for downloads and built data")
    args = p.parse_args(argv)
    if args.image and (args.split != "test" or args.mnist_dir or args.textures):
        p.error("--image classifies files; --split, --mnist-dir and --textures do not apply")
    return args


def load_split(saved, args, name, xp):
    """The DeviceSplit ``name`` ("val" or "test") of the saved model's run, rebuilt from the
    data flags or the run's record and checked against the data it was trained on."""
    dataset = load_dataset(saved.config, data_sources(vars(args), saved.meta))
    changes = data_changes(saved.meta["data"], dataset.provenance)
    if changes:
        raise UsageError(f"the data differ from those the run was trained on: "
                         f"{'; '.join(changes)}. Point --mnist-dir / --textures at the run's "
                         "data (its config.json's \"data\" record names every file)")
    return DeviceSplit(getattr(dataset, name), dataset.mean, dataset.std, xp,
                       saved.config.limit_eval)


def evaluate_split(saved, args, xp):
    """{split, digit_acc, texture_acc, images} of the saved model on the run's split."""
    split = load_split(saved, args, args.split, xp)
    digit, texture = accuracies(saved.model, lambda index: saved.inputs(split.images[index]),
                                split, xp)
    return {"split": args.split, f"{args.split}_digit_acc": digit,
            f"{args.split}_texture_acc": texture, "images": split.n}


def read_image(path):
    """(uint8 (3, 32, 32) array, "W x H MODE" of the file) or a UsageError naming it; read by
    data/images.py, which decodes only the formats it lists."""
    from PIL import Image
    try:
        image, mode = read_rgb8(path, f"Give a {FORMAT_NAMES} file")
    except DataError as err:
        raise UsageError(f"--image {err}") from None
    original = f"{image.size[0]}x{image.size[1]} {mode}"
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1), original


def classify(saved, paths, xp):
    """{file, size, class, probability} of the saved model for each image file, in order.

    A generator: the files are read and classified IMAGE_BATCH at a time, so memory holds
    one batch whatever the number of files, and each result comes as its batch is done."""
    for start in range(0, len(paths), IMAGE_BATCH):
        batch = paths[start:start + IMAGE_BATCH]
        read = [read_image(p) for p in batch]
        images = xp.asarray(np.stack([r[0] for r in read]))
        logits = to_numpy(saved.model.forward(saved.inputs(images))).astype(np.float64)
        e = np.exp(logits - logits.max(axis=0))
        probabilities = e / e.sum(axis=0)
        predicted = probabilities.argmax(axis=0)
        for i, (p, (_, size), c) in enumerate(zip(batch, read, predicted)):
            yield {"file": p, "size": size, "class": int(c),
                   "probability": float(probabilities[c, i])}


def describe(saved, path):
    """One line: the checkpoint, its method and how it was selected."""
    selected = saved.meta.get("selected")
    how = ""
    if selected:
        how = (f", selected at epoch {selected['epoch']} (validation digit "
               f"{100 * selected['val_digit_acc']:.1f}%, texture "
               f"{100 * selected['val_texture_acc']:.1f}%)")
    return f"{path}: {saved.config.method}, seed {saved.config.seed}{how}"


def refuse_run_folder(path):
    """A UsageError where ``path`` is a run folder, naming the models in it to evaluate."""
    if not os.path.isdir(path):
        return
    folder = RunFolder(path)
    models = [folder.file(name) for name in BEST.values() if folder.exists(name)]
    if models:
        raise UsageError(f"{path} is a run folder, not a model file; evaluate one of its "
                         f"selected models: {' or '.join(models)}")
    if folder.holds_run():
        raise UsageError(f"{path} is a run folder that holds no selected model yet "
                         "(best_digit.npz and best_texture.npz are written after its first "
                         "validation); evaluate it once its run has finished an epoch")


def run(args):
    if args.device == "gpu" and gpu_unavailable_reason():
        raise UsageError(f"--device gpu: {gpu_unavailable_reason()}; or use --device cpu")
    if args.device == "cpu":
        use_cores()
    xp = xp_for(args.device)
    refuse_run_folder(args.checkpoint)
    try:
        saved = load(args.checkpoint, xp)
    except SavedModelError as err:
        raise UsageError(str(err))
    print(describe(saved, args.checkpoint))
    if args.image:
        print(f"images made 8-bit RGB and resized to {IMAGE_SIZE}x{IMAGE_SIZE} (bilinear); "
              "class: the predicted digit (0-9), p: its softmax probability")
        results = []
        for r in classify(saved, args.image, xp):
            print(f"{r['file']} ({r['size']}): class {r['class']}, p = {r['probability']:.3f}")
            if args.json:
                results.append(r)
        result = {"checkpoint": args.checkpoint, "images": results}
    else:
        result = {"checkpoint": args.checkpoint, **evaluate_split(saved, args, xp)}
        s = args.split
        print(f"{s} digit accuracy {100 * result[f'{s}_digit_acc']:.2f}%, texture accuracy "
              f"{100 * result[f'{s}_texture_acc']:.2f}% ({result['images']} images)")
    if args.json:
        print(json.dumps(result))
    return 0


@quiet_on_closed_pipe
def main(argv=None):
    args = parse(argv)
    try:
        return run(args)
    except UsageError as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nevaluate.py: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
