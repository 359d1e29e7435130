"""Checkpoints: an exact round trip, an atomic write, and clear errors.

A checkpoint is one .npz file; whatever goes wrong while reading it must
surface as a CheckpointError whose one-line message names the file.
"""
import os
import zipfile

import numpy as np
import pytest

from minivae.checkpoint import CheckpointError, load_checkpoint, restore_params, save_checkpoint
from minivae.models.vae import VAE
from minivae.runs import RunDir


def example(seed=0):
    """Params of mixed dtypes, optimizer arrays and step count, meta and an order."""
    rng = np.random.default_rng(seed)
    params = {"encoder.hidden.0.W": rng.standard_normal((5, 3)).astype(np.float32),
              "encoder.hidden.0.b": rng.standard_normal(3).astype(np.float32),
              "decoder.logits.W": rng.standard_normal((3, 5))}
    optimizer_state = {"adam.m.encoder.hidden.0.W": rng.standard_normal((5, 3)).astype(np.float32),
                       "adam.v.decoder.logits.W": rng.random((3, 5)),
                       "steps": 42}
    meta = {"config": {"latent": 3, "hidden": [3], "lr": 0.02, "clip_norm": None},
            "position": {"epoch": 2, "step": 7, "elbo_sum": -1234.5678901234567},
            "rng": np.random.default_rng(seed).bit_generator.state}   # 128-bit integers
    order = rng.permutation(11)
    return params, optimizer_state, meta, order


def assert_one_line_naming(err, path):
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message


# ---------------------------------------------------------------- round trip

def test_save_then_load_returns_params_optimizer_state_meta_and_order_exactly(tmp_path):
    params, optimizer_state, meta, order = example()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, params, optimizer_state, meta, order)
    got_params, got_state, got_meta, got_order = load_checkpoint(path)
    assert got_params.keys() == params.keys()
    for name, array in params.items():
        assert got_params[name].dtype == array.dtype
        np.testing.assert_array_equal(got_params[name], array)
    assert got_state.keys() == optimizer_state.keys()
    assert got_state["steps"] == 42 and isinstance(got_state["steps"], int)
    for key in ("adam.m.encoder.hidden.0.W", "adam.v.decoder.logits.W"):
        assert got_state[key].dtype == optimizer_state[key].dtype
        np.testing.assert_array_equal(got_state[key], optimizer_state[key])
    for key, value in meta.items():
        assert got_meta[key] == value
    np.testing.assert_array_equal(got_order, order)


def test_a_generator_restored_from_meta_continues_the_same_stream(tmp_path):
    rng = np.random.default_rng(5)
    rng.standard_normal(17)
    params, state, meta, _ = example()
    meta["rng"] = rng.bit_generator.state
    save_checkpoint(tmp_path / "c.npz", params, state, meta)
    restored = np.random.default_rng()
    restored.bit_generator.state = load_checkpoint(tmp_path / "c.npz")[2]["rng"]
    np.testing.assert_array_equal(restored.standard_normal(5), rng.standard_normal(5))


def test_without_an_order_load_returns_none_for_it(tmp_path):
    params, state, meta, _ = example()
    save_checkpoint(tmp_path / "c.npz", params, state, meta)
    assert load_checkpoint(tmp_path / "c.npz")[3] is None


def test_a_run_directory_and_its_checkpoint_file_name_the_same_run(tmp_path):
    params, state, meta, order = example()
    save_checkpoint(tmp_path / "checkpoint.npz", params, state, meta, order)
    for given in (tmp_path, tmp_path / "checkpoint.npz"):
        run = RunDir.of(given)
        assert run.path == tmp_path and run.checkpoint == tmp_path / "checkpoint.npz"
        np.testing.assert_array_equal(load_checkpoint(run.checkpoint)[3], order)


def test_save_creates_missing_directories_and_overwrites_an_old_checkpoint(tmp_path):
    path = tmp_path / "run" / "deeper" / "checkpoint.npz"
    save_checkpoint(path, *example(seed=0))
    save_checkpoint(path, *example(seed=1))
    np.testing.assert_array_equal(load_checkpoint(path)[3], example(seed=1)[3])
    assert os.listdir(path.parent) == ["checkpoint.npz"]


# ---------------------------------------------------------------- atomic write

@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_a_write_failing_midway_keeps_the_previous_checkpoint_and_leaves_no_temp_file(
        tmp_path, monkeypatch, error):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, *example(seed=0))
    before = path.read_bytes()

    def failing_savez(file, *args, **kwargs):
        file.write(b"PK\x03\x04 the first few bytes of a zip")
        raise error
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(type(error)):
        save_checkpoint(path, *example(seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.npz"]
    np.testing.assert_array_equal(load_checkpoint(path)[3], example(seed=0)[3])


def test_a_first_write_failing_leaves_no_file_at_all(tmp_path, monkeypatch):
    def failing_savez(file, *args, **kwargs):
        file.write(b"PK")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "checkpoint.npz", *example())
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- unreadable files

def test_loading_a_missing_file_raises_checkpoint_error_naming_it(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_a_run_directory_without_a_checkpoint_names_the_expected_file(tmp_path):
    with pytest.raises(CheckpointError) as err:
        RunDir.of(tmp_path).load()
    assert_one_line_naming(err, tmp_path / "checkpoint.npz")


@pytest.mark.parametrize("keep", [0, 3, 100, 0.5, -1], ids=lambda k: f"keep={k}")
def test_loading_a_truncated_file_raises_checkpoint_error_naming_it(tmp_path, keep):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, *example())
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_a_file_with_flipped_bytes_in_an_array_raises_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    params, state, meta, order = example()
    params["decoder.logits.W"] = np.full((30, 30), 1.5)   # a long run of known bytes
    save_checkpoint(path, params, state, meta, order)
    data = bytearray(path.read_bytes())
    start = bytes(data).index(np.full(8, 1.5).tobytes())
    data[start:start + 8] = np.full(1, -7.0).tobytes()    # the zip's CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_a_text_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_an_npz_without_meta_says_it_is_not_a_minivae_checkpoint(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, W=np.zeros((2, 2)), b=np.zeros(2))
    with pytest.raises(CheckpointError, match="not a minivae checkpoint") as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_a_checkpoint_of_another_format_version_names_both_formats(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array('{"format": "minivae-checkpoint-0"}'))
    with pytest.raises(CheckpointError, match="minivae-checkpoint-0") as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_a_plain_npy_array_raises_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as f:
        np.save(f, np.arange(10))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_loading_an_npz_whose_meta_is_not_json_raises_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array("{not json"))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


@pytest.mark.parametrize("meta", ['[1, 2, 3]', '"minivae-checkpoint-1"', '{"format": "minivae-checkpoint-1"}'])
def test_loading_an_npz_whose_meta_is_json_of_another_shape_raises_checkpoint_error(tmp_path, meta):
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.array(meta))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


def test_a_zip_of_other_files_raises_checkpoint_error(tmp_path):
    path = tmp_path / "checkpoint.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert_one_line_naming(err, path)


# ---------------------------------------------------------------- restore_params

def model(latent=2, dtype=np.float32, seed=0):
    return VAE(x_dim=6, hidden=(4,), latent=latent, dtype=dtype, rng=np.random.default_rng(seed))


def saved_params(m):
    return {name: t.data.copy() for name, t in m.named_parameters()}


def test_restore_params_copies_every_array_into_the_model():
    target, source = model(), model(seed=1)
    params = saved_params(source)
    restore_params(target, params, "ckpt")
    for name, t in target.named_parameters():
        np.testing.assert_array_equal(t.data, params[name])
        assert t.data.dtype == np.float32
    params["encoder.mu.W"][:] = 99.0      # the model holds copies, not the caller's arrays
    assert not np.any(target.params["encoder.mu.W"].data == 99.0)


def assert_rejected_unchanged(m, params, *words):
    before = saved_params(m)
    with pytest.raises(CheckpointError) as err:
        restore_params(m, params, "run/checkpoint.npz")
    message = str(err.value)
    assert "\n" not in message and "run/checkpoint.npz" in message
    for word in words:
        assert word in message
    for name, t in m.named_parameters():
        np.testing.assert_array_equal(t.data, before[name])


def test_restore_params_rejects_a_missing_parameter_by_name():
    m = model()
    params = saved_params(model(seed=1))
    del params["decoder.logits.b"]
    assert_rejected_unchanged(m, params, "missing", "decoder.logits.b")


def test_restore_params_rejects_an_unexpected_parameter_by_name():
    m = model()
    params = {**saved_params(model(seed=1)), "decoder.extra.W": np.zeros((2, 2), np.float32)}
    assert_rejected_unchanged(m, params, "unexpected", "decoder.extra.W")


def test_restore_params_rejects_a_wrong_shape_naming_the_parameter_and_both_shapes():
    m = model(latent=2)
    params = saved_params(model(latent=3, seed=1))
    assert_rejected_unchanged(m, params, "encoder.mu.W", "(4, 3)", "(4, 2)")


def test_restore_params_rejects_a_wrong_dtype_naming_the_parameter():
    m = model(dtype=np.float32)
    params = saved_params(model(seed=1))
    params["decoder.hidden.0.W"] = params["decoder.hidden.0.W"].astype(np.float64)
    assert_rejected_unchanged(m, params, "decoder.hidden.0.W", "float64", "float32")
