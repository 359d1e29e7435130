"""One measure across the family: each model of `minivae.models.MODELS` trained
on the embedded MNIST with the same budget, then its code probed.

For every model: code size, test reconstruction error (the likelihood's one
unit: cross-entropy in nats for binary pixels, sum of squares for
intensities), linear-probe test accuracy on the frozen codes (softmax
regression trained with minivae's own engine, `minivae.probe`), and the
training time.  Each model trains through `minivae.train.train`, as
`minivae train --model NAME` does, into --out/NAME.

    PYTHONPATH=. python benchmarks/family.py                       # 10 epochs each
    PYTHONPATH=. python benchmarks/family.py --epochs 1 --out /tmp/family   # a quick look

It ends with a Markdown table for the README.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from minivae import data
from minivae.config import Config
from minivae.models import MODELS
from minivae.probe import probe
from minivae.runs import RunDir
from minivae.train import train

# shared by all: a 20-dimensional code, one hidden layer of 500 where a model has
# one, Adam 1e-3 without weight decay; PCA fits in one pass
COMMON = {"latent": 20, "hidden": (500,), "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}


def flags_for(model, epochs):
    """The config fields of one model's run: COMMON where they apply."""
    cls = MODELS[model]
    flags = {"model": model, "epochs": 1 if model == "pca" else epochs}
    for name, value in COMMON.items():
        if name in cls.options or (model != "pca" and name in ("optimizer", "lr",
                                                                "weight_decay")):
            flags[name] = value
    return flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/family"))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    dataset = data.load_mnist()
    rows = []
    for model in args.models:
        flags = flags_for(model, args.epochs)
        out = args.out / model
        if (out / "checkpoint.npz").exists():
            result = train(Config.from_flags(**flags), out, resume=out, progress=False, k=100)
        else:
            result = train(Config.from_flags(**flags), out, progress=False, k=100)
        trained = RunDir(out).load()
        started = time.perf_counter()
        probed = probe(trained.model, dataset, np.random.default_rng(0))
        rows.append({"model": model, "code": trained.model.latent, "flags": flags,
                     "test_error": result["test_error"], "error_unit": result["error_unit"],
                     "log_px": result.get("log_px"),
                     "probe_accuracy": probed["test_accuracy"],
                     "probe_seconds": time.perf_counter() - started,
                     "train_seconds": RunDir(out).read_metrics()[-1]["train_seconds"],
                     "epochs": flags["epochs"]})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| model | code size | test reconstruction error | linear probe, test accuracy "
          "| training time (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        unit = "nats" if r["error_unit"].startswith("nats") else "sum of squares"
        print(f"| {r['model']} | {r['code']} | {r['test_error']:.2f} ({unit}) | "
              f"{100 * r['probe_accuracy']:.1f} % | {r['train_seconds']:.0f} "
              f"({r['epochs']} epoch{'s' if r['epochs'] > 1 else ''}) |")


if __name__ == "__main__":
    main()
