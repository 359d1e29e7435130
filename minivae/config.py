"""A run's configuration: sections of fields, each field with its default, its
check and its help text, in one place.

    model       which model and its shape (Appendix C)
    objective   the bound and its estimator (section 2.3), beta and its warm-up,
                the IWAE bound
    optimizer   the learning rule (Algorithm 1, or wake-sleep) and its stochastic
                gradient method (section 5: Adagrad, the weight prior)
    data        the data set, binarization and minibatch size M
    run         epochs, seed and floating-point type

The defaults are the paper's MNIST setup (section 5): 784-500-20 tanh MLPs,
N(0, 0.01^2) initialization, estimator B with L = 1, Adagrad, the N(0, I)
prior on the parameters, M = 100.  Field names are unique across sections,
so each is also a command-line flag (`latent` is `--latent`): the command
line is built from these fields, and a preset is a JSON file of them.
"""
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from minivae.autograd import SUPPORTED_DTYPES
from minivae.data import BINARIZATIONS, INTENSITIES
from minivae.datasets import normalized
from minivae.algorithms import FitPCA, GradientAscent, WakeSleep
from minivae.corruptions import GaussianNoise, MaskingNoise
from minivae.likelihoods import LIKELIHOODS, MEANS
from minivae.mcem import MonteCarloEM
from minivae.models import MODELS, SUMMARIES
from minivae.nn import ACTIVATIONS, INITS
from minivae.objectives import (ELBO, ESTIMATORS, IWAE, KLWarmUp, MaskedReconstruction,
                                Reconstruction, WeightedELBO)
from minivae.optim import OPTIMIZERS
from minivae.posteriors import POSTERIORS

PRESETS = Path(__file__).parent / "presets"
DTYPES = tuple(d.name for d in SUPPORTED_DTYPES)

# kind of value -> (convert from text, accepts, what is expected)
KINDS = {
    "positive int": (int, lambda v: v >= 1, "a positive integer"),
    "int >= 0": (int, lambda v: v >= 0, "an integer >= 0"),
    "positive number": (float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    "number >= 0": (float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "number": (float, math.isfinite, "a finite number"),
    "text": (str, lambda v: True, "text"),
}


def _field(default, help, kind="text", choices=None, many=False, optional=False):
    """A config field: its default, help text, kind of value, choices, and
    whether it takes several values (`many`) or may be None (`optional`)."""
    meta = {"help": help, "kind": kind, "choices": choices, "many": many, "optional": optional}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def check_value(name, value, meta):
    """`value` of field `name`, normalized (tuples for `many`), or ValueError naming it."""
    if value is None and meta["optional"]:
        return None
    convert, accepts, expected = KINDS[meta["kind"]]
    if meta["many"]:
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if not values:
            raise ValueError(f"{name} needs at least one value")
        return tuple(check_value(name, v, {**meta, "many": False}) for v in values)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if convert is int and not (is_number and float(value).is_integer()) \
            or convert is float and not is_number or convert is str and not isinstance(value, str):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    value = convert(value)
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if not accepts(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


class Section:
    """A group of fields that checks each of its values when it is made."""

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name), f.metadata))


@dataclass
class ModelConfig(Section):
    model: str = _field("vae", "which model: " + "; ".join(
        f"{name}, {summary}" for name, summary in SUMMARIES.items()), choices=tuple(MODELS))
    latent: int = _field(20, "latent dimension J", "positive int")
    hidden: tuple = _field((500,), "hidden layer widths of the encoder (the decoder mirrors "
                                   "them)", "positive int", many=True)
    decoder: str = _field(None, "p(x|z): bernoulli for binary pixels (cross-entropy), gaussian "
                                "(mean and variance) or squared (sum-of-squares error) for "
                                "intensities (default: bernoulli; squared for linear-ae, "
                                "masked-ae and pca)", choices=tuple(LIKELIHOODS), optional=True)
    activation: str = _field("tanh", "hidden-layer activation", choices=ACTIVATIONS)
    init: str = _field("normal", "normal: N(0, 0.01^2) as in the paper; xavier: Glorot "
                                 "uniform", choices=INITS)
    variance: str = _field("output", "the gaussian decoder's variance: output, per pixel and "
                                     "image from the decoder (Appendix C.2); pixel, one learned "
                                     "per pixel; scalar, one learned for all",
                           choices=("output", "pixel", "scalar"))
    logvar_floor: float = _field(None, "lower bound on the gaussian decoder's log-variance "
                                       "(default: none)", "number", optional=True)
    decoder_mean: str = _field("identity", "the gaussian decoder's mean: identity, the "
                                           "decoder's output (Appendix C.2); sigmoid, squashed "
                                           "into (0, 1), the paper's Frey Face decoder "
                                           "(section 5)", choices=MEANS)
    classes: int = _field(10, "classes of the label y a cvae is conditioned on",
                          "positive int")
    posterior: str = _field("gaussian", "the family of q(z|x) (section 2.4): gaussian, as "
                                        "in the paper; laplace (location-scale) or logistic "
                                        "(inverse CDF)", choices=tuple(POSTERIORS))

    def __post_init__(self):
        if self.decoder is None and self.model in MODELS:
            self.decoder = MODELS[self.model].default_decoder
        super().__post_init__()

    def build(self, x_dim, dtype, rng):
        """The model, its parameters drawn from rng; it takes the fields it names."""
        cls = MODELS[self.model]
        return cls(x_dim=x_dim, dtype=dtype, rng=rng,
                   **{name: getattr(self, name) for name in cls.options})


@dataclass
class ObjectiveConfig(Section):
    estimator: str = _field("B", "SGVB estimator: A (eq. 6) or B with analytic KL (eq. 7)",
                            choices=ESTIMATORS)
    samples: int = _field(1, "L, samples of z per datapoint", "positive int")
    objective: str = _field("elbo", "what a vae ascends: elbo, the variational lower bound; "
                                    "iwae, the importance-weighted bound L_k (Burda et al. "
                                    "2016)", choices=("elbo", "iwae"))
    k_train: int = _field(5, "k, samples per datapoint of the IWAE bound", "positive int")
    beta: float = _field(1.0, "weight of the KL term, E[log p(x|z)] - beta KL (Bishop 19.2); "
                              "below 1 the objective is no lower bound on log p(x)",
                         "number >= 0")
    warmup: float = _field(0.0, "epochs over which beta rises linearly from --warmup-start "
                                "to --beta (0: no warm-up)", "number >= 0")
    warmup_start: float = _field(0.0, "beta at the start of the warm-up", "number >= 0")
    sparsity: float = _field(0.1, "lambda of the L1 penalty on the code, eq. 19.4 (our choice; "
                                  "the book gives none)", "positive number")
    corruption: str = _field("masking", "masking: each input set to 0 with probability "
                                        "--drop-prob; gaussian: noise of std --noise-std "
                                        "(eq. 19.5)", choices=("masking", "gaussian"))
    drop_prob: float = _field(0.25, "nu, the masking probability (our choice)", "positive number")
    noise_std: float = _field(0.3, "sigma of the Gaussian corruption (our choice)",
                              "positive number")
    mask_ratio: float = _field(0.75, "share of patches masked per image (19.1.5)",
                               "positive number")
    patch: int = _field(4, "patch side in pixels; must divide the image (4: 49 patches on "
                           "MNIST)", "positive int")

    def build(self, model, image_shape):
        """The training objective of `model` (a name in MODELS)."""
        return OBJECTIVES.get(model, OBJECTIVES["ae"])(self, image_shape)


# the learning rules of --algorithm, each with the models it trains (None: every one)
ALGORITHMS = {"aevb": None, "wake-sleep": ("vae",), "mcem": ("vae",)}


@dataclass
class OptimizerConfig(Section):
    algorithm: str = _field("aevb", "learning rule: aevb, Algorithm 1; the paper's baselines "
                                    "of section 5: wake-sleep (Hinton, Dayan, Frey & Neal "
                                    "1995; Figures 2 and 3) and mcem, Monte Carlo EM with an "
                                    "HMC chain per training point (Figure 3)",
                            choices=tuple(ALGORITHMS))
    optimizer: str = _field("adagrad", "stochastic gradient method (the paper used Adagrad)",
                            choices=tuple(OPTIMIZERS))
    lr: float = _field(None, "step size (default: " + ", ".join(
        f"{c.default_lr:g} for {name}" for name, c in OPTIMIZERS.items()) + ")",
        "positive number", optional=True)
    momentum: float = _field(0.9, "SGD momentum", "number >= 0")
    weight_decay: float = _field(1.0, "Gaussian prior on the parameters, N(0, I/weight_decay), "
                                      "scaled by 1/N in the per-datapoint objective",
                                 "number >= 0")
    clip_norm: float = _field(None, "clip the global gradient norm to this value (default: "
                                    "no clipping)",
                              "positive number", optional=True)

    def __post_init__(self):
        if self.lr is None and self.optimizer in OPTIMIZERS:
            self.lr = OPTIMIZERS[self.optimizer].default_lr
        super().__post_init__()

    def build(self, params, n):
        """The optimizer over `params`; the prior's weight decay is shared by n datapoints."""
        cls = OPTIMIZERS[self.optimizer]
        return cls(params, lr=self.lr, clip_norm=self.clip_norm,
                   weight_decay=self.weight_decay / n,
                   **{h: getattr(self, h) for h in cls.hyperparameters})


@dataclass
class DataConfig(Section):
    data: str = _field(None, "directory of MNIST-format IDX files, or frey:PATH, Frey Face "
                             "from frey_rawface.mat (default: the embedded MNIST)",
                       optional=True)
    binarize: str = _field("dynamic", "binary pixels: a fresh binarization per minibatch, one "
                                      "fixed binarization, or data that is already binary "
                                      "(pixels 0 or 255)", choices=BINARIZATIONS)
    batch_size: int = _field(100, "minibatch size M", "positive int")
    train_size: int = _field(None, "N, train on the first N training images (default: all "
                                   "of them; the paper's Figure 3 uses 1000 and 50000)",
                             "positive int", optional=True)
    intensities: str = _field("scaled", "continuous pixels: scaled, pixel / 255; dequantized, "
                                        "(pixel + u) / 256 with fresh u ~ U(0, 1) per "
                                        "minibatch, whose density is bounded",
                              choices=INTENSITIES)

    def __post_init__(self):
        super().__post_init__()
        self.data = normalized(self.data)   # the same data compares equal from anywhere


@dataclass
class RunConfig(Section):
    epochs: int = _field(20, "passes over the training set", "positive int")
    seed: int = _field(0, "seed of the run's random generator", "int >= 0")
    dtype: str = _field("float32", "floating-point type of parameters and arithmetic",
                        choices=DTYPES)
    track_log_px: int = _field(0, "K: after the epochs at which the samples evaluated pass "
                                  "1, 2 or 5 x 10^k, and after the last, estimate log p(x) "
                                  "by importance sampling with K samples on the first "
                                  "--track-images training and test images, into the metrics "
                                  "(0: never; the paper's Figure 3)", "int >= 0")
    track_images: int = _field(1000, "images of each split that --track-log-px scores",
                               "positive int")


def _bound(o, shape):
    """A latent-variable model's objective: the IWAE bound, the ELBO, or the
    beta-weighted ELBO when beta is not 1 or warms up."""
    if o.objective == "iwae":
        return IWAE(o.k_train)
    if o.beta == 1 and not o.warmup:
        return ELBO(o.estimator, o.samples)
    return WeightedELBO(o.estimator, o.samples, o.beta)


OBJECTIVES = {
    "vae": _bound,
    "cvae": _bound,
    "ae": lambda o, shape: Reconstruction(),
    "sparse-ae": lambda o, shape: Reconstruction(sparsity=o.sparsity),
    "denoising-ae": lambda o, shape: Reconstruction(
        corruption=MaskingNoise(o.drop_prob) if o.corruption == "masking" else
        GaussianNoise(o.noise_std)),
    "masked-ae": lambda o, shape: MaskedReconstruction(tuple(shape), o.patch, o.mask_ratio),
}
SECTIONS = {"model": ModelConfig, "objective": ObjectiveConfig, "optimizer": OptimizerConfig,
            "data": DataConfig, "run": RunConfig}
FLAGS = {f.name: (section, f) for section, cls in SECTIONS.items() for f in fields(cls)}
CHANGEABLE_ON_RESUME = ("epochs",)


def fields_of(section):
    """The names of a section's fields."""
    return {f.name for f in fields(section)}


@dataclass
class Config:
    """Everything that defines a run, in sections: `config.model.latent`, ..."""
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_flags(cls, **values):
        """A Config from field names, e.g. Config.from_flags(latent=2, epochs=5); the
        rest keep their defaults.  An unknown name is a ValueError."""
        unknown = sorted(set(values) - set(FLAGS))
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        return cls(**{name: section(**{f.name: values[f.name] for f in fields(section)
                                       if f.name in values})
                      for name, section in SECTIONS.items()})

    @classmethod
    def from_dict(cls, d):
        """A Config from what `as_dict` wrote, or from the flat dict of the
        first checkpoints (one level, field -> value)."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        if set(d) <= set(SECTIONS) and all(isinstance(v, dict) for v in d.values()):
            d = {k: v for section in d.values() for k, v in section.items()}
        return cls.from_flags(**d)

    def learning_rule(self, model, n, image_shape):
        """How `model` learns from n training images of image_shape: its objective
        ascended by the optimizer (Algorithm 1), wake-sleep's two phases, each
        with its own optimizer, Monte Carlo EM's chains and updates, or, for PCA,
        one fitting pass."""
        def optimizer(params):   # each learning rule's own, over the parameters it updates
            return self.optimizer.build(params, n)
        if self.optimizer.algorithm == "wake-sleep":
            return WakeSleep(model, optimizer)
        if self.optimizer.algorithm == "mcem":
            theta, phi = ({name: model.params[name] for name in names}
                          for names in (model.generative, model.recognition))
            return MonteCarloEM(model, optimizer(theta), optimizer(phi), n)
        objective = self.objective.build(self.model.model, image_shape)
        if self.model.model == "pca":
            return FitPCA(model, objective)
        o, schedule = self.objective, None
        if isinstance(objective, WeightedELBO) and o.warmup:
            steps_per_epoch = math.ceil(n / self.data.batch_size)
            schedule = KLWarmUp(objective, o.warmup_start,
                                max(1, round(o.warmup * steps_per_epoch)))
        return GradientAscent(model, objective, self.optimizer.build(model.params, n), schedule)

    def as_dict(self):
        """{section: {field: value}}, JSON-ready."""
        return asdict(self)

    def flat(self):
        """{field: value} over every section."""
        return {k: v for section in self.as_dict().values() for k, v in section.items()}

    def resumed_with(self, given):
        """This (saved) config with the fields in `given` that may change on resume
        applied.  Any other given field whose value differs is a ValueError that
        names each such flag with its saved and given values."""
        saved = self.flat()
        given = Config.from_flags(**{**saved, **given}).flat()   # checked and normalized
        differ = [k for k in given if given[k] != saved[k] and k not in CHANGEABLE_ON_RESUME]
        if differ:
            raise ValueError("the run was trained with other settings: " + "; ".join(
                f"--{k.replace('_', '-')} saved {_show(saved[k])}, given {_show(given[k])}"
                for k in differ) + " (only --epochs may change on resume)")
        return Config.from_flags(**given)


def _show(value):
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def load_preset(name_or_path):
    """The fields of a preset: a name in minivae/presets (e.g. 'paper-mnist') or a JSON
    file's path.  The file holds one object of field -> value."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS / f"{name_or_path}.json"
    if not path.is_file():
        names = sorted(p.stem for p in PRESETS.glob("*.json"))
        raise ValueError(f"no preset {name_or_path!r}: expected a JSON file or one of {names}")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable JSON preset ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a preset is one JSON object of field -> value")
    Config.from_flags(**values)   # every name and value checked now, not mid-run
    return values


def default(name):
    """The default value of field `name` (e.g. default('lr') is None: per optimizer)."""
    f = FLAGS[name][1]
    return f.default_factory() if f.default is MISSING else f.default
