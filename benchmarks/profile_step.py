"""Two epochs of Adam steps of the paper's model, to profile where a step's time goes.

    pip install py-spy
    PYTHONPATH=. py-spy record --native -r 200 -f raw -o /tmp/prof.txt -- python benchmarks/profile_step.py

The 784-500-20 Bernoulli VAE, estimator B, L = 1, batch 100, dynamic
binarization, float32, as bench_epoch.py times it; 20 warm-up steps first, so
that Numba's compilation is over (a profile keeps only the stacks under
GradientAscent.step that are not compiling).  benchmarks/RESULTS.md says what
the last profile found.
"""
import numpy as np
from minivae.algorithms import GradientAscent
from minivae.data import binarize_dynamic, load_mnist
from minivae.models.vae import VAE
from minivae.objectives import ELBO
from minivae.optim import Adam
rng = np.random.default_rng(0)
images = load_mnist().train_images
model = VAE(rng=rng)
learn = GradientAscent(model, ELBO("B"), Adam(model.params, lr=1e-3, weight_decay=0.0))
for _ in range(20):   # warm-up: Numba compiles
    learn.step(binarize_dynamic(images[rng.integers(0, 60000, 100)], rng, model.dtype), rng)
for epoch in range(2):
    for i in range(600):
        idx = rng.integers(0, 60000, 100)
        learn.step(binarize_dynamic(images[idx], rng, model.dtype), rng)
