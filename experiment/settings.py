"""train.py's command line: its flags, checked, into a Command that holds the run's Config.

Every flag is documented in ``--help`` and in README.md. The names --device,
--ifm, --epochs, --seed, --textures, --mnist-dir, --out, --resume and
--limit-train are fixed (scripts rely on them). The defaults are Config's
(experiment/config.py), read here; --optimizer and --lr left out take the
method's.
"""
import argparse
import math
import os
import sys
from dataclasses import dataclass, fields
from typing import Optional

from nn.cpu.parallel import available_cores

from .config import (CLASSIFIER_ONLY, COMPOSITES, DATA_LOCATIONS, ESTIMATORS, FEATURE_POINTS,
                     ICE_LABELS, ICE_ONLY, IFM_ONLY, INITS, MARGINALS, METHODS, OPTIMIZERS,
                     TEXTURE_CROPS, UPSAMPLINGS, Config)

DEFAULT = Config()
# A flow step is ActNorm, channel reversal, then a coupling that changes the second half
# of the channels; each split keeps the first half. With one step per level, what the
# splits keep never went through a coupling: two steps per level is the least that mixes.
MIN_FLOW_DEPTH = 2


def number_type(convert, accept, description):
    """An argparse type: ``convert`` the text, then require ``accept(value)``.

    Also refuses nan and inf, which float() would let through.
    """
    def parse_number(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {description}, got {text!r}")
        if not (accept(value) and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected {description}, got {value}")
        return value
    return parse_number


positive_int = number_type(int, lambda v: v >= 1, "a positive integer")
non_negative_int = number_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = number_type(float, lambda v: v > 0, "a positive number")
momentum_arg = number_type(float, lambda v: 0 <= v < 1,
                           "a momentum in [0, 1) (at 1 or more the velocity never decays)")
non_negative_float = number_type(float, lambda v: v >= 0, "a number >= 0")


def samples_arg(text):
    """K: a positive integer or "all"."""
    if text == "all":
        return "all"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")


def pairs_arg(text):
    """"1-2,2-3,3-4" -> [(1, 2), (2, 3), (3, 4)]; adjacent blocks of 1..4 only."""
    pairs = []
    for part in text.split(","):
        try:
            low, high = (int(v) for v in part.strip().split("-"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected pairs like '1-2,2-3,3-4', got {text!r}")
        if not (1 <= low <= 3 and high == low + 1):
            raise argparse.ArgumentTypeError(
                f"pair {part!r}: IFM pairs adjacent conv blocks, one of 1-2, 2-3, 3-4")
        pairs.append((low, high))
    if len(set(pairs)) != len(pairs):
        raise argparse.ArgumentTypeError(f"repeated pair in {text!r}")
    return pairs


def program():
    """How this process was started: "ifm-train" (the installed command) or "train.py"."""
    return "ifm-train" if os.path.basename(sys.argv[0]) == "ifm-train" else "train.py"


def command():
    """The command that runs train.py again: "ifm-train" or "python train.py"."""
    return "ifm-train" if program() == "ifm-train" else "python train.py"


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line that names the flag (no usage block); ``command``
    is what the user types to run it (for the --help hint)."""

    def __init__(self, *args, command=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.command = command or f"python {self.prog}"

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} ({self.command} --help lists every "
                     "flag)\n")


def build_parser():
    p = Parser(
        prog=program(), command=command(),
        description="Train the Table 1 classifier on shiftedMNIST, with or without the IFM "
                    "regularizer, or the iCE fi-RevNet of Jacobsen et al. (2019); keep the "
                    "best-validation-digit and best-validation-texture checkpoints and print "
                    "the paper's Table 3 for this run.")
    g = p.add_argument_group("run")
    g.add_argument("--method", choices=METHODS, default=None,
                   help="baseline: the Table 1 classifier; ifm: with the IFM regularizer "
                        "(the same as --ifm); ice-firevnet: the invertible iCE model (default: "
                        "baseline, or ifm with --ifm)")
    g.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu: NumPy; gpu: CuPy on the current CUDA device (default: cpu)")
    g.add_argument("--out", default=None,
                   help="run folder (default: runs/<method>-seed<seed> for the method's main "
                        "settings; a run that changes any is named after its changes, e.g. "
                        "runs/ifm-epochs2-limit-train2000-seed0)")
    start = g.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint (from its start "
                            "if it stopped before its first one); settings, device and CPU "
                            "cores come from its config.json, and only --epochs (more, not "
                            "fewer), --quiet, the data locations --mnist-dir, --textures, "
                            "--cache-dir (their content is checked) and --allow-data-change "
                            "may be given anew")
    start.add_argument("--restart", action="store_true",
                       help="clear the run files in --out (config, checkpoint, history, best "
                            "models, report) and start a new run there with these flags")
    g.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue even though the data differ from those the "
                        "run started on (the change is recorded in config.json)")
    g.add_argument("--epochs", type=positive_int, default=DEFAULT.epochs,
                   help="training epochs (default: 10)")
    g.add_argument("--seed", type=non_negative_int, default=DEFAULT.seed,
                   help="seed of weight init, shuffling and IFM sampling (default: 0)")
    g.add_argument("--quiet", action="store_true", help="no progress line")
    g.add_argument("--cpu-cores", type=positive_int, default=None,
                   help="with --device cpu: threads the NumPy work is split over (default: all "
                        "cores this process may use; 1: one thread plus OpenBLAS's own, as "
                        "plain NumPy). Changes float rounding too, so a resume keeps the run's "
                        "count; see nn/cpu/parallel.py")

    g = p.add_argument_group("data")
    g.add_argument("--mnist-dir", default=None,
                   help="directory with the four MNIST IDX files (default: $IFM_MNIST_DIR, "
                        "else the download cache)")
    g.add_argument("--textures", default=None,
                   help="'dtd', 'procedural' or a directory of >= 10 images "
                        "(default: $IFM_TEXTURES, else 'dtd')")
    g.add_argument("--cache-dir", default=None,
                   help="cache for downloads and built data (default: $IFM_CACHE_DIR, else "
                        "$XDG_CACHE_HOME/ifm, else ~/.cache/ifm)")
    g.add_argument("--data-seed", type=non_negative_int, default=DEFAULT.data_seed,
                   help="seed of the dataset build: split, texture choice and crops (default: 0); "
                        "kept apart from --seed so that seeds compare models on the same data")
    g.add_argument("--limit-train", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    g.add_argument("--limit-eval", type=positive_int, default=None,
                   help="validate and test on the first N images only (quick runs)")
    g.add_argument("--texture-crops", choices=TEXTURE_CROPS, default=DEFAULT.texture_crops,
                   help="inside: each 32x32 background crop lies inside its texture image; "
                        "wrap: any offset, the texture repeated periodically past its edges "
                        "(default: inside)")
    g.add_argument("--composite", choices=COMPOSITES, default=DEFAULT.composite,
                   help="how the digit is drawn on its texture: white strokes, black strokes, "
                        "or contrast (per image, white on a crop darker than mid-grey, black "
                        "on a brighter one) (default: white; see docs/data.md)")
    g.add_argument("--eval-every", type=positive_int, default=None,
                   help="also validate every N training steps, not only at epoch ends; the "
                        "best checkpoints are chosen over all validations (default: epoch "
                        "ends only). The test split is still read only for the two chosen "
                        "checkpoints")

    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                   help="sgd (with momentum), adam or adamax (default: sgd; adamax with "
                        "--method ice-firevnet, for the encoder and for D_nc, as the authors)")
    g.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 0.01; 0.001 with --method ice-firevnet, whose "
                        "encoder follows the authors' schedule: x0.2 after epochs 61, 121, 161)")
    g.add_argument("--momentum", type=momentum_arg, default=DEFAULT.momentum,
                   help="SGD momentum, in [0, 1) (default: 0.9)")
    g.add_argument("--weight-decay", type=non_negative_float, default=DEFAULT.weight_decay,
                   help="L2 weight decay of sgd and adam (default: 0)")
    g.add_argument("--batch-size", type=positive_int, default=DEFAULT.batch_size,
                   help="batch size (default: 128)")
    g.add_argument("--init", choices=INITS, default=DEFAULT.init,
                   help="weight init: kaiming (normal, leaky-ReLU gain, zero biases), "
                        "fan-in-uniform (U(+-1/sqrt(fan_in)) for weights and biases of every "
                        "conv and linear layer, D's included), or head-fan-in-uniform (only "
                        "the FC head; default: kaiming); baseline and ifm only")

    g = p.add_argument_group("iCE fi-RevNet (--method ice-firevnet only)")
    g.add_argument("--flow-depth", type=positive_int, default=DEFAULT.flow_depth,
                   help=f"flow steps per level, 3 levels, at least {MIN_FLOW_DEPTH} (with one, "
                        "each logit is an affine map of one input pixel; default: 16, the "
                        "authors')")
    g.add_argument("--ice-beta", type=non_negative_float, default=DEFAULT.ice_beta,
                   help="weight beta of the nuisance term: L = bpd + CE(z_s) - beta * "
                        "CE(D_nc(z_n)) (default: 0.05, the authors')")
    g.add_argument("--ice-labels", choices=ICE_LABELS, default=DEFAULT.ice_labels,
                   help="labels of the encoder's nuisance term: the true ones (the paper's "
                        "text) or a random permutation of them within the batch (the authors' "
                        "code; default: true)")

    g = p.add_argument_group("IFM regularizer (--method ifm, or --ifm, only)")
    g.add_argument("--ifm", action="store_true",
                   help="add the IFM regularizer: L = L_clf - lambda * sum_l F_l")
    g.add_argument("--lam", type=non_negative_float, default=DEFAULT.lam,
                   help="IFM weight lambda (default: 30, chosen on validation digit accuracy; "
                        "the paper's Eq. 5 has no weight, i.e. lambda 1; see README 'Defaults')")
    g.add_argument("--lam-d", type=positive_float, default=None,
                   help="weight of F_l in D's own objective: D_l's gradient is that of "
                        "-lam_d * F_l (default: lam, so that D descends the CNN's L; 1: D "
                        "maximizes F_l at its own scale, which keeps a large lam finite; a "
                        "departure from the paper only where lam is not 1)")
    g.add_argument("--samples", type=samples_arg, default=DEFAULT.samples,
                   help="K locations per image for joint pairs (and as many marginal pairs), "
                        "an integer or 'all' (default: 64)")
    g.add_argument("--estimator", choices=ESTIMATORS, default=DEFAULT.estimator,
                   help="MI estimator (default: jsd)")
    g.add_argument("--marginal", choices=MARGINALS, default=DEFAULT.marginal,
                   help="marginal pairs drawn within one image or across the batch (default: image)")
    g.add_argument("--upsample", choices=UPSAMPLINGS, default=DEFAULT.upsample,
                   help="how H_{l+1} is brought to H_l's size (default: nearest)")
    g.add_argument("--pairs", type=pairs_arg, default=DEFAULT.pairs,
                   help=f"conv-block pairs (default: {settings_text(DEFAULT.pairs)})")
    g.add_argument("--pair-features", choices=FEATURE_POINTS, default=DEFAULT.pair_features,
                   help="which H_l are paired: each block's output after LeakyReLU and before "
                        "pooling, or after pooling (default: pre-pool)")
    return p


@dataclass(frozen=True)
class Command:
    """One train.py command line: the run's Config and how to run it (``parse``)."""
    config: Config
    device: str = "cpu"
    cpu_cores: Optional[int] = None     # None: all the cores this process may use
    out: Optional[str] = None           # None: default_out(config)
    resume: bool = False
    restart: bool = False
    allow_data_change: bool = False
    quiet: bool = False
    cache_dir: Optional[str] = None
    typed: frozenset = frozenset()      # the flags typed, as Config's names (--ifm: method)
    argv: tuple = ()                    # the words typed after the program

    def locations(self):
        """The data locations typed ({mnist_dir, textures, cache_dir}; None where not)."""
        return {"mnist_dir": self.config.mnist_dir, "textures": self.config.textures,
                "cache_dir": self.cache_dir}

    def differences(self, run):
        """{name: (the Config ``run``'s value, this command's)} where the two differ; a
        data location counts only where this command types one."""
        return {k: d for k, d in run.differences(self.config).items()
                if k not in DATA_LOCATIONS or k in self.typed}


def default_out(config):
    """runs/<method>-seed<S> for the method's main settings; a run that changes any (a
    quick try with fewer epochs, say) gets the changes in its name, e.g.
    runs/ifm-epochs2-limit-train2000-samples16-seed0, so that it never takes the folder
    of a main run."""
    parts = [config.method] + [flag(k)[2:] + value_text(v) for k, v in config.main_differences()]
    return os.path.join("runs", "-".join(parts + [f"seed{config.seed}"]))


def settings_text(value):
    """A setting's value as a flag takes it: pairs as 1-2,2-3; others as they print."""
    if isinstance(value, (list, tuple)):
        return ",".join("-".join(map(str, p)) for p in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def value_text(value):
    """A setting's value as a file-name part: "1-2,2-3" for pairs, no slashes or spaces."""
    if isinstance(value, (list, tuple)):
        value = ",".join("-".join(map(str, p)) for p in value)
    text = os.path.basename(os.path.normpath(str(value))) if isinstance(value, str) else f"{value:g}" \
        if isinstance(value, float) else str(value)
    return "".join(c if c.isalnum() or c in ".,-_" else "_" for c in text)


def plural(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def flag(key):
    return "--" + key.replace("_", "-")


def flag_list(keys):
    return ", ".join("--" + k.replace("_", "-") for k in keys)


def explicit_flags(parser, argv):
    """The dests of the flags actually typed on the command line."""
    quiet = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if action.dest == "help":
            continue
        kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
        if action.nargs == 0:
            kwargs["action"] = "store_const"
            kwargs["const"] = True
        else:
            kwargs["type"] = str
        quiet.add_argument(*action.option_strings, **kwargs)
    known, _ = quiet.parse_known_args(argv)
    return set(vars(known))


def parse(argv=None):
    """The Command of ``argv`` (default: sys.argv[1:]); a one-line error (exit status 2)
    where the flags contradict each other."""
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = tuple(sys.argv[1:] if argv is None else argv)
    typed = explicit_flags(parser, argv)
    if args.out is not None and not args.out.strip():
        parser.error("--out '': give a folder for the run (or leave --out out for the "
                     "default, named after the run's settings)")
    if args.cpu_cores is not None and args.cpu_cores > available_cores():
        parser.error(f"--cpu-cores {args.cpu_cores}: this process may use "
                     f"{available_cores()} cores; more threads than cores only slow the work "
                     "down (and change its rounding). Give at most that many")
    if args.allow_data_change and not args.resume:
        parser.error("--allow-data-change only makes sense with --resume")
    if args.ifm and args.method not in (None, "ifm"):
        parser.error(f"--ifm means --method ifm; it clashes with --method {args.method}")
    method = "ifm" if args.ifm else args.method or "baseline"
    only = ((IFM_ONLY, ("ifm",), "--ifm (--method ifm)"),
            (ICE_ONLY, ("ice-firevnet",), "--method ice-firevnet"),
            (CLASSIFIER_ONLY, ("baseline", "ifm"), "--method baseline or ifm"))
    for keys, methods, where in only:
        given = sorted(k for k in keys if k in typed)
        if given and method not in methods:
            parser.error(f"{flag_list(given)} only make sense with {where}, not with "
                         f"--method {method}")
    if method == "ice-firevnet" and args.flow_depth < MIN_FLOW_DEPTH:
        parser.error(f"--flow-depth {args.flow_depth}: with one flow step per level the kept "
                     "half of the channels never passes through a coupling, so each logit "
                     "is an affine map (ActNorm, then the logits' batch norm) of a single "
                     "input pixel and the classifier cannot learn; the smallest depth that "
                     f"mixes is {MIN_FLOW_DEPTH}")
    config = Config(**{f.name: getattr(args, f.name) for f in fields(Config)
                       if f.name != "method"}, method=method)
    if config.optimizer == "adamax" and config.weight_decay:
        parser.error("--weight-decay: adamax has no weight decay here; use sgd or adam")
    if "ifm" in typed:
        typed = (typed - {"ifm"}) | {"method"}
    return Command(config, device=args.device, cpu_cores=args.cpu_cores, out=args.out,
                   resume=args.resume, restart=args.restart,
                   allow_data_change=args.allow_data_change, quiet=args.quiet,
                   cache_dir=args.cache_dir, typed=frozenset(typed), argv=argv)
