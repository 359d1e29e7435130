"""Which settings go together: a field the chosen model, objective, learning
rule or data does not use is refused in one line before anything runs,
e.g. --mask-ratio with --model vae, or --estimator with --algorithm
wake-sleep.  The fields and their own checks live in `config`."""
from dataclasses import fields

from minivae.config import ALGORITHMS, ModelConfig, OptimizerConfig, default, fields_of
from minivae.datasets import is_frey
from minivae.likelihoods import LIKELIHOODS
from minivae.models import MODELS


class UsageError(ValueError):
    """Flags that parse one by one but not together: exit code 2, as the parser's."""


# objective and optimizer fields, and the models they apply to (model fields: each
# model's `options`)
LATENT_VARIABLE = ("vae", "cvae")
APPLIES = {"estimator": LATENT_VARIABLE, "samples": LATENT_VARIABLE,
           "objective": LATENT_VARIABLE, "k_train": LATENT_VARIABLE, "beta": LATENT_VARIABLE,
           "warmup": LATENT_VARIABLE, "warmup_start": LATENT_VARIABLE, "sparsity": ("sparse-ae",),
           "corruption": ("denoising-ae",), "drop_prob": ("denoising-ae",),
           "noise_std": ("denoising-ae",), "mask_ratio": ("masked-ae",),
           "patch": ("masked-ae",)}
APPLIES.update({f.name: tuple(m for m in MODELS if m != "pca")
                for f in fields(OptimizerConfig)})
# objective fields and the objective (elbo or iwae) they apply to
BOUND_OF = {"estimator": "elbo", "samples": "elbo", "beta": "elbo", "warmup": "elbo",
            "warmup_start": "elbo", "k_train": "iwae"}


def check_applies(given):
    """ValueError, in one line, for a field in `given` (field -> value, as a user
    set them) that the chosen model or learning rule does not use, e.g.
    --mask-ratio with vae, --estimator with --algorithm wake-sleep."""
    model, algorithm = given.get("model", "vae"), given.get("algorithm", "aevb")
    if model not in MODELS or algorithm not in ALGORITHMS:
        return   # the fields' own checks name the choices
    if model not in (ALGORITHMS[algorithm] or (model,)):
        raise ValueError(f"--algorithm {algorithm} does not apply to --model {model}; it "
                         f"applies to {', '.join(ALGORITHMS[algorithm])}")
    bound = next((n for n in given if n in BOUND_OF or n == "objective"), None)
    if algorithm != "aevb" and bound:   # the other rules ascend objectives of their own
        raise ValueError(f"--{bound.replace('_', '-')} does not apply to --algorithm "
                         f"{algorithm}; it applies to --algorithm aevb")
    for name in given:
        if name in fields_of(ModelConfig) and name != "model":
            users = tuple(m for m, cls in MODELS.items() if name in cls.options)
        else:
            users = APPLIES.get(name)
        if users is not None and model not in users:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --model {model}; "
                             f"it applies to {', '.join(users)}")
        bound = given.get("objective", "elbo")
        if BOUND_OF.get(name, bound) != bound:
            raise ValueError(f"--{name.replace('_', '-')} does not apply to --objective "
                             f"{bound}; it applies to --objective {BOUND_OF[name]}")
    size, batch = given.get("train_size"), given.get("batch_size", default("batch_size"))
    if isinstance(size, int) and isinstance(batch, int) and 0 < size < batch:
        raise ValueError(f"--train-size {size} is smaller than a minibatch (--batch-size "
                         f"{batch}); give a smaller --batch-size or more images")
    if "track_images" in given and not given.get("track_log_px"):
        raise ValueError("--track-images applies to tracking log p(x): give --track-log-px K "
                         "too")
    if given.get("track_log_px") and not MODELS[model].has_prior:
        raise ValueError(f"--track-log-px needs a model with a prior p(z); --model {model} "
                         f"has none")
    if "warmup_start" in given and not given.get("warmup"):
        raise ValueError("--warmup-start applies to a warm-up: give --warmup EPOCHS too")
    decoder = given.get("decoder") or MODELS[model].default_decoder
    if decoder not in LIKELIHOODS:
        return   # the decoder field's own check names the choices
    if "intensities" in given and LIKELIHOODS[decoder].pixels != "continuous":
        raise ValueError(f"--intensities applies to continuous pixels (a gaussian or squared "
                         f"decoder), not to --decoder {decoder}")
    if is_frey(given.get("data")) and LIKELIHOODS[decoder].pixels != "continuous":
        raise ValueError(f"--data frey: Frey Face pixels are grey levels; --decoder {decoder} "
                         f"models binary pixels, use --decoder gaussian or squared")
    if is_frey(given.get("data")) and "classes" in MODELS[model].options:   # conditional
        raise ValueError(f"--data frey: Frey Face has no labels; --model {model} reads them")
    for name in ("variance", "logvar_floor", "decoder_mean"):
        if name in given and decoder != "gaussian":
            raise ValueError(f"--{name.replace('_', '-')} applies to --decoder gaussian, not to "
                             f"--decoder {decoder}")
