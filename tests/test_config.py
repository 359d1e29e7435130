"""A run's configuration: sections that check their own fields, flags built
from them, presets, and what may change when a run is resumed."""
import json

import pytest

from minivae import config as cfg
from minivae.cli import main
from minivae.config import Config, load_preset
from minivae.likelihoods import LIKELIHOODS
from minivae.models import MODELS
from minivae.nn import ACTIVATIONS
from minivae.optim import OPTIMIZERS


def test_the_defaults_are_the_papers_mnist_setup():
    c = Config()
    assert (c.model.latent, c.model.hidden, c.model.decoder, c.model.activation,
            c.model.init) == (20, (500,), "bernoulli", "tanh", "normal")
    assert (c.objective.estimator, c.objective.samples) == ("B", 1)
    assert (c.optimizer.optimizer, c.optimizer.lr, c.optimizer.weight_decay) == \
        ("adagrad", 0.02, 1.0)
    assert (c.data.batch_size, c.data.binarize, c.run.dtype) == (100, "dynamic", "float32")


def test_the_paper_preset_is_the_default_config():
    assert Config.from_flags(**load_preset("paper-mnist")) == Config()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimizer_takes_its_own_default_learning_rate(name):
    assert Config.from_flags(optimizer=name).optimizer.lr == OPTIMIZERS[name].default_lr


def test_choice_lists_come_from_the_registries():
    choices = {name: f.metadata["choices"] for name, (_, f) in cfg.FLAGS.items()}
    assert choices["model"] == tuple(MODELS) and choices["decoder"] == tuple(LIKELIHOODS)
    assert choices["activation"] == ACTIVATIONS and choices["optimizer"] == tuple(OPTIMIZERS)


@pytest.mark.parametrize("flags, words", [
    ({"latent": 0}, "latent must be a positive integer"),
    ({"hidden": [500, 0]}, "hidden must be a positive integer"),
    ({"lr": float("inf")}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"momentum": float("inf")}, "momentum must be a finite number >= 0"),
    ({"weight_decay": -1.0}, "weight_decay must be a finite number >= 0"),
    ({"activation": "foo"}, "activation must be one of"),
    ({"samples": 1.5}, "samples must be a positive integer"),
    ({"epochs": True}, "epochs must be a positive integer"),
    ({"colour": "red"}, "unknown config fields ['colour']"),
])
def test_a_bad_field_is_a_value_error_naming_it(flags, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")
                       .replace(">", ">").replace("+", r"\+")):
        Config.from_flags(**flags)


def test_a_config_survives_its_dict_and_reads_the_flat_dict_of_older_checkpoints():
    c = Config.from_flags(latent=3, hidden=[7, 5], optimizer="adam", seed=4)
    assert Config.from_dict(json.loads(json.dumps(c.as_dict()))) == c
    flat = {k: v for k, v in c.flat().items() if k != "model"}   # older runs had no `model`
    assert Config.from_dict(flat) == c


def test_resuming_accepts_more_epochs_and_names_every_other_difference():
    saved = Config.from_flags(latent=4, epochs=2)
    assert saved.resumed_with({"epochs": 9, "latent": 4}).run.epochs == 9
    with pytest.raises(ValueError) as err:
        saved.resumed_with({"latent": 5, "optimizer": "adam", "epochs": 3})
    message = str(err.value)
    assert "--latent saved 4, given 5" in message and "--optimizer saved adagrad, given adam" \
        in message and "epochs" not in message.split("(")[0] and "\n" not in message


def test_every_field_is_a_train_flag_with_its_default_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in cfg.FLAGS:
        assert f"--{name.replace('_', '-')}" in help_text
        default = cfg.default(name)
        if default is not None:
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            assert f"(default: {shown})" in help_text, name


@pytest.mark.parametrize("text", ["inf", "nan", "-inf", "1e400"])
def test_the_parser_refuses_a_non_finite_hyperparameter_in_one_line(text, capsys, tmp_path):
    for flag in ("--lr", "--momentum", "--weight-decay", "--clip-norm"):
        with pytest.raises(SystemExit) as exit_:
            main(["train", f"{flag}={text}", "--out", str(tmp_path / "never")])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and flag in err and "finite" in err
        assert err.count("\n") == 1
    assert not (tmp_path / "never").exists()


def test_a_preset_file_sets_fields_and_flags_override_it(tmp_path, data_dir, capsys):
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps({"latent": 3, "hidden": [16], "epochs": 1, "seed": 5,
                                  "data": str(data_dir)}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(preset), "--seed", "6", "--out", str(out), "--k", "2",
                 "--no-progress", "--no-figures"]) == 0
    saved = Config.from_dict(json.loads((out / "config.json").read_text()))
    assert (saved.model.latent, saved.model.hidden, saved.run.seed) == (3, (16,), 6)


@pytest.mark.parametrize("content, words", [("[1, 2]", "one JSON object"),
                                            ("{\"latent\": 0}", "latent must be"),
                                            ("{not json", "not a readable JSON preset")])
def test_a_bad_preset_is_a_one_line_error(tmp_path, capsys, content, words):
    preset = tmp_path / "bad.json"
    preset.write_text(content)
    assert main(["train", "--config", str(preset), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_an_unknown_preset_name_lists_the_presets(tmp_path, capsys):
    assert main(["train", "--config", "nonesuch", "--out", str(tmp_path / "run")]) == 1
    assert "paper-mnist" in capsys.readouterr().err
