"""The models minivae trains, by name.

Every model follows the contract written out in `models.base`; training,
evaluation, figures and checkpoints use nothing else of a model.  The VAE
of Kingma & Welling (2013) is the first entry.
"""
from minivae.models.vae import VAE

MODELS = {"vae": VAE}
