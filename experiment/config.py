"""A run's settings as one typed, frozen value: Config.

train.py's flags fill it once (experiment/settings.py); everything else reads
its attributes. The run folder stores it as config.json's "settings" (to_json)
and a saved model's record holds it without "epochs"; from_json reads both
back, also those of runs made before a setting existed (the setting's default
is what such runs did). The field defaults are train.py's defaults, so
Config(method=m) is the main configuration of method m.

Data locations: ``mnist_dir`` and ``textures`` are the flags as typed (None
where not typed); where the data were actually read from is config.json's
"sources" record (experiment/dataset.py).
"""
from dataclasses import dataclass, fields, replace
from typing import Optional, Tuple, Union

METHODS = ("baseline", "ifm", "ice-firevnet")
OPTIMIZERS = ("sgd", "adam", "adamax")
ESTIMATORS = ("jsd", "dv", "infonce", "paper-eq4")
MARGINALS = ("image", "batch")
UPSAMPLINGS = ("nearest", "bilinear")
FEATURE_POINTS = ("pre-pool", "post-pool")
INITS = ("kaiming", "fan-in-uniform", "head-fan-in-uniform")
TEXTURE_CROPS = ("inside", "wrap")
COMPOSITES = ("white", "black", "contrast")
ICE_LABELS = ("true", "shuffled")
# The optimizer and learning rate of each method where the command gives none: the Table 1
# classifier's (the paper's Section 4.2), and the authors' for iCE.
OPTIMIZER_DEFAULTS = {"baseline": ("sgd", 0.01), "ifm": ("sgd", 0.01),
                      "ice-firevnet": ("adamax", 1e-3)}
# The settings of one method only: given for another, train.py refuses them.
IFM_ONLY = ("lam", "lam_d", "samples", "estimator", "marginal", "upsample", "pairs",
            "pair_features")
CLASSIFIER_ONLY = ("init",)             # the Table 1 classifier of baseline and ifm
ICE_ONLY = ("flow_depth", "ice_beta", "ice_labels")
DATA_LOCATIONS = ("mnist_dir", "textures")


@dataclass(frozen=True)
class Config:
    """Every setting that defines a run's computation (train.py --help says what each does).

    ``optimizer`` and ``lr`` left None take the method's OPTIMIZER_DEFAULTS.
    """
    epochs: int = 10
    seed: int = 0
    textures: Optional[str] = None
    mnist_dir: Optional[str] = None
    data_seed: int = 0
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None
    texture_crops: str = "inside"
    composite: str = "white"
    eval_every: Optional[int] = None
    method: str = "baseline"
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    init: str = "kaiming"
    lam: float = 30.0
    lam_d: Optional[float] = None       # None: lam (D descends the CNN's L)
    samples: Union[int, str] = 64       # K, or "all"
    estimator: str = "jsd"
    marginal: str = "image"
    upsample: str = "nearest"
    pairs: Tuple[Tuple[int, int], ...] = ((1, 2), (2, 3), (3, 4))
    pair_features: str = "pre-pool"
    flow_depth: int = 16
    ice_beta: float = 0.05
    ice_labels: str = "true"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is none of {', '.join(METHODS)}")
        optimizer, lr = OPTIMIZER_DEFAULTS[self.method]
        if self.optimizer is None:
            object.__setattr__(self, "optimizer", optimizer)
        if self.lr is None:
            object.__setattr__(self, "lr", lr)
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))

    @property
    def ifm(self):
        """Whether the IFM regularizer trains with the classifier (method "ifm")."""
        return self.method == "ifm"

    def replace(self, **changes):
        return replace(self, **changes)

    def to_json(self):
        """config.json's "settings": every field (pairs as lists), and "ifm", which runs
        made before --method existed saved instead of a method."""
        settings = {f.name: getattr(self, f.name) for f in fields(self)}
        settings["pairs"] = [list(p) for p in self.pairs]
        settings["ifm"] = self.ifm
        return settings

    @classmethod
    def from_json(cls, settings):
        """The Config of config.json's "settings" or of a saved model's record (which
        leaves out "epochs": a resume may extend them). A setting the record lacks (the
        run was made before it existed) takes its default, what such runs did; "method"
        comes from "ifm" in runs made before --method."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in settings.items() if k in names}
        values.setdefault("method", "ifm" if settings.get("ifm") else "baseline")
        return cls(**values)

    def differences(self, other):
        """{name: (self's value, other's value)} of the fields where the two differ."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)}

    def main_differences(self):
        """[(name, value)] of the settings where this run differs from its method's main
        configuration (train.py's defaults for that method), in field order; the seed and
        the MNIST location are not differences."""
        return [(k, mine) for k, (mine, _) in self.differences(Config(method=self.method)).items()
                if k not in ("seed", "mnist_dir")]
