"""ConvONet's PyTorch checkpoint converter: names, layouts, errors, the run folder, the command line,
and, with torch and the original source (CONVONET_SRC), the original model's predictions.

  PYTHONPATH=<torch's site> CONVONET_SRC=<a convolutional_occupancy_networks checkout> \
      python -m pytest -q tests/methods/convonet/test_convert.py

The original modules are loaded from their files (`src/encoder/pointnet.py`,
`src/conv_onet/models/`); their package's compiled and CUDA dependencies are stood in
for: `torch_scatter` by the same reductions on `torch.Tensor.scatter_reduce_`, and
`src.utils.libkdtree` (only used by `common.py`'s Chamfer distance) by a placeholder.
"""

import importlib
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiment_configs
from implicit_fields import trainer
from implicit_fields.methods.convonet import convert

VARIANTS = ("planes", "grid", "planes+grid", "planes-no-unet")


def _config(variant):
    config = experiment_configs.load("convonet.py:grid,tiny" if variant == "grid" else "convonet.py:tiny")
    if variant == "planes+grid":  # The original's room_combine: both U-Nets.
        config.model.plane_type = ("xz", "xy", "yz", "grid")
    elif variant == "planes-no-unet":
        config.model.plane_type = ("xz",)
        config.model.unet = False
    return config


def _random_variables(config, seed=0):
    """Every parameter random (none zero, GroupNorm scales away from 1)."""
    rng = np.random.default_rng(seed)
    shapes = convert.variable_shapes(config)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), jnp.float32), shapes)


def _assert_same(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype == jnp.float32
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------
# Names and layouts.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_through_the_original_layout(variant):
    config = _config(variant)
    variables = _random_variables(config)
    state = convert.to_state_dict(variables, config)
    _assert_same(convert.from_state_dict(state, config), variables)
    params = variables["params"]
    # One entry per parameter, under the original's names (PyTorch's list indices).
    assert len(state) == len(jax.tree.leaves(params))
    assert state["encoder.fc_pos.weight"].shape == (16, 3)  # Linear [out, in]
    assert state["encoder.blocks.1.shortcut.weight"].shape == (8, 16)
    assert "encoder.blocks.1.shortcut.bias" not in state
    assert "decoder.blocks.1.shortcut.weight" not in state  # hidden -> hidden
    np.testing.assert_array_equal(state["decoder.fc_c.1.weight"], params["decoder"]["fc_c_1"]["kernel"].T)
    np.testing.assert_array_equal(state["decoder.fc_out.bias"], params["decoder"]["fc_out"]["bias"])
    if variant in ("planes", "planes+grid"):
        unet = params["encoder"]["unet"]
        conv = state["encoder.unet.down_convs.1.conv1.weight"]  # Conv2d [out, in, kh, kw]
        assert conv.shape == (8, 4, 3, 3)
        np.testing.assert_array_equal(np.einsum("oiab->abio", conv), unet["down_convs_1"]["conv1"]["kernel"])
        up = state["encoder.unet.up_convs.0.upconv.weight"]  # ConvTranspose2d [in, out, kh, kw]
        assert up.shape == (8, 4, 2, 2)
        np.testing.assert_array_equal(np.einsum("ioab->abio", up), unet["up_convs_0"]["upconv"]["kernel"])
        assert state["encoder.unet.conv_final.weight"].shape == (8, 4, 1, 1)
    else:
        assert not any(k.startswith("encoder.unet.") for k in state)
    if "grid" in variant:
        prefix = "encoder.unet3d.encoders.1.basic_module.SingleConv2"
        conv = state[f"{prefix}.conv.weight"]  # Conv3d [out, in, kd, kh, kw], no bias
        assert conv.shape == (16, 8, 3, 3, 3) and f"{prefix}.conv.bias" not in state
        single = params["encoder"]["unet3d"]["encoders_1"]["SingleConv2"]
        np.testing.assert_array_equal(np.einsum("oiabc->abcio", conv), single["conv"]["kernel"])
        np.testing.assert_array_equal(state[f"{prefix}.groupnorm.weight"], single["groupnorm"]["scale"])
        assert state["encoder.unet3d.decoders.0.basic_module.SingleConv1.groupnorm.bias"].shape == (24,)
        assert state["encoder.unet3d.final_conv.weight"].shape == (8, 8, 1, 1, 1)
    else:
        assert not any(k.startswith("encoder.unet3d.") for k in state)


def test_the_parameter_map_describes_every_entry():
    config = _config("planes+grid")
    entries = convert.parameter_map(config)
    state = convert.to_state_dict(_random_variables(config), config)
    assert [e["torch_name"] for e in entries] == list(state)
    for e in entries:
        assert state[e["torch_name"]].shape == e["torch_shape"]
    kinds = {e["torch_name"]: e["kind"] for e in entries}
    assert kinds["decoder.blocks.0.fc_1.weight"] == "linear"
    assert kinds["encoder.unet.up_convs.0.upconv.weight"] == "conv_transpose2d"
    assert kinds["encoder.unet.up_convs.0.conv2.bias"] == "conv2d"
    assert kinds["encoder.unet3d.final_conv.weight"] == "conv3d"
    assert kinds["encoder.unet3d.encoders.0.basic_module.SingleConv1.groupnorm.weight"] == "group_norm"


# --------------------------------------------------------------------------------------
# Errors: every problem of a state dict in one message, by name.
# --------------------------------------------------------------------------------------


def _other_model_state(**changes):
    """The state dict of the tiny planes model with other settings."""
    config = _config("planes")
    for key, value in changes.items():
        config.model[key] = value
    return convert.to_state_dict(_random_variables(config), config)


MISMATCHES = {
    "missing": (
        lambda s: s.pop("decoder.blocks.1.fc_0.bias"),
        ["missing from the checkpoint (1):\n    decoder.blocks.1.fc_0.bias"],
    ),
    "extra": (
        lambda s: s.update({"encoder.conv_in.weight": np.zeros((32, 1, 3, 3, 3), np.float32)}),
        ["in the checkpoint but not in the model (1):\n    encoder.conv_in.weight"],
    ),
    "wrong shape": (
        lambda s: s.update({"encoder.fc_pos.weight": s["encoder.fc_pos.weight"].T}),
        ["wrong shape (1):\n    encoder.fc_pos.weight: checkpoint (3, 16), model expects (16, 3)"],
    ),
    "upconv as a conv": (
        lambda s: s.update({"encoder.unet.up_convs.0.upconv.weight": np.zeros((4, 8, 2, 2), np.float32)}),
        ["encoder.unet.up_convs.0.upconv.weight: checkpoint (4, 8, 2, 2), model expects (8, 4, 2, 2)"],
    ),
    "wider features": (
        lambda s: s.clear() or s.update(_other_model_state(c_dim=16)),
        [
            "config.model.c_dim=8, the checkpoint's shapes say 16",
            "encoder.fc_c.weight: checkpoint (16, 8), model expects (8, 8)",
        ],
    ),
    "more decoder blocks": (
        lambda s: s.clear() or s.update(_other_model_state(decoder_blocks=3)),
        [
            "config.model.decoder_blocks=2, the checkpoint's shapes say 3",
            "in the checkpoint but not in the model (6):\n    decoder.blocks.2.fc_0.bias",
        ],
    ),
    "a grid model's": (
        lambda s: (
            s.clear() or s.update(convert.to_state_dict(_random_variables(_config("grid")), _config("grid")))
        ),
        [
            "config.model.unet: the checkpoint has no 2D U-Net, the config one on its planes",
            "config.model.unet3d: the checkpoint has a 3D U-Net (encoder.unet3d.*), on a grid: needs "
            "model.unet3d=True and 'grid' in model.plane_type (now ['xz', 'xy', 'yz'])",
            "missing from the checkpoint (16):\n    encoder.unet.",
            "encoder.unet3d.decoders.0.basic_module.SingleConv1.conv.weight",
        ],
    ),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_a_mismatch_is_reported_by_name(case):
    config = _config("planes")
    state = convert.to_state_dict(_random_variables(config), config)
    change, expected = MISMATCHES[case]
    change(state)
    with pytest.raises(convert.ConversionError) as err:
        convert.from_state_dict(state, config)
    message = str(err.value)
    assert message.startswith(
        "the state dict does not match the model (plane_type=['xz', 'xy', 'yz'], c_dim=8"
    )
    for text in expected:
        assert text in message, message


def test_every_problem_is_reported_at_once():
    config = _config("grid")
    state = convert.to_state_dict(_random_variables(config), config)
    del state["decoder.fc_p.bias"]
    state["decoder.fc_q.weight"] = np.zeros((8, 3), np.float32)
    state["decoder.fc_out.weight"] = np.zeros((8, 1), np.float32)
    state["encoder.fc_c.bias"] = state["encoder.fc_c.bias"].astype(np.int64)
    state["encoder.unet3d.final_conv.bias"][1:3] = np.nan
    with pytest.raises(convert.ConversionError) as err:
        convert.from_state_dict(state, config)
    message = str(err.value)
    for text in (
        "missing from the checkpoint (1):\n    decoder.fc_p.bias",
        "in the checkpoint but not in the model (1):\n    decoder.fc_q.weight",
        "wrong shape (1):\n    decoder.fc_out.weight: checkpoint (8, 1), model expects (1, 8)",
        "not floating point (weights must be floats) (1):\n    encoder.fc_c.bias: dtype int64",
        "NaN or infinite values (1):\n    encoder.unet3d.final_conv.bias: 2 of 8 values",
    ):
        assert text in message, message


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_integer_weights_are_refused_and_other_floats_converted(dtype):
    config = _config("planes")
    state = convert.to_state_dict(_random_variables(config), config)
    key = "encoder.unet.down_convs.0.conv1.weight"
    state[key] = np.ones(state[key].shape, dtype)
    with pytest.raises(
        convert.ConversionError, match=f"{key}: dtype {np.dtype(dtype)}, expected floating point"
    ):
        convert.from_state_dict(state, config)
    state[key] = state[key].astype(np.float64)
    state["decoder.fc_out.bias"] = state["decoder.fc_out.bias"].astype(np.float16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(convert.from_state_dict(state, config)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(bad):
    config = _config("grid")
    state = convert.to_state_dict(_random_variables(config), config)
    state["encoder.unet3d.encoders.0.basic_module.SingleConv1.groupnorm.weight"][0] = bad
    with pytest.raises(convert.ConversionError, match=r"SingleConv1.groupnorm.weight: 1 of 8 values"):
        convert.from_state_dict(state, config)


def test_variables_of_another_model_are_refused():
    variables = _random_variables(_config("grid"))
    with pytest.raises(ValueError, match="not those of the config's model"):
        convert.to_state_dict(variables, _config("planes"))


# --------------------------------------------------------------------------------------
# Files and run folders.
# --------------------------------------------------------------------------------------


def test_npz_with_a_data_parallel_prefix_converts(tmp_path):
    config = _config("grid")
    variables = _random_variables(config)
    path = tmp_path / "state.npz"
    np.savez(path, **{f"module.{k}": v for k, v in convert.to_state_dict(variables, config).items()})
    model, converted = convert.convert_checkpoint(str(path), config)
    assert model.plane_type == ("grid",)
    _assert_same(converted, variables)
    with pytest.raises(convert.ConversionError) as err:
        convert.convert_checkpoint(str(path), _config("planes"))
    assert str(err.value).startswith(f"{path}: the state dict does not match the model")


def test_an_original_style_pt_converts(tmp_path):
    """The file formats and the safe loader: tests/test_torch_checkpoints.py."""
    torch = pytest.importorskip("torch")
    config = _config("planes")
    variables = _random_variables(config)
    state = {k: torch.from_numpy(v) for k, v in convert.to_state_dict(variables, config).items()}
    path = str(tmp_path / "model.pt")
    # As the original's CheckpointIO saves it: the model, counters and a numpy float.
    checkpoint = {"model": state, "epoch_it": 3, "it": 10, "loss_val_best": np.float64(0.5)}
    torch.save(checkpoint, path)
    _assert_same(convert.convert_checkpoint(path, config)[1], variables)


def test_converted_run_folder_restores(tmp_path):
    config = _config("planes")
    variables = _random_variables(config)
    workdir = convert.save_as_run(config, variables, str(tmp_path / "run"), source="x.pt")
    _, state, meta = trainer.restore(config, workdir)
    assert meta["step"] == 0 and meta["converted_from"].endswith("x.pt")
    assert state.batch_stats == {}
    _assert_same({"params": state.params}, variables)
    with pytest.raises(ValueError, match=r"already holds a run \(config.json, best\)"):
        convert.save_as_run(config, variables, workdir)
    with pytest.raises(ValueError, match="not those of the config's model"):
        convert.save_as_run(config, _random_variables(_config("grid")), str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


# --------------------------------------------------------------------------------------
# The command line.
# --------------------------------------------------------------------------------------


def _cli(*args):
    env = dict(os.environ, IMPLICIT_FIELDS_DEBUG="0", JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.convert_checkpoint", *args],
        cwd=experiment_configs.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_converts_a_convonet_checkpoint(tmp_path):
    """A grid checkpoint into a run; the same into a planes config and a DVR config: one-line errors."""
    config = _config("grid")
    variables = _random_variables(config)
    npz = tmp_path / "state.npz"
    np.savez(npz, **convert.to_state_dict(variables, config))
    # A method without a converter (refused before anything else is imported or read).
    (tmp_path / "dvr.py").write_text(
        "import ml_collections\n\n\ndef get_config():\n"
        "    return ml_collections.ConfigDict({'method': 'dvr'})\n"
    )
    configs = {
        "grid": "experiments/configs/convonet.py:grid,tiny",
        "planes": "experiments/configs/convonet.py:tiny",
        "dvr": str(tmp_path / "dvr.py"),
    }
    procs = {  # Side by side (each imports JAX).
        name: _cli("--config", spec, "--input", str(npz), "--output", str(tmp_path / name))
        for name, spec in configs.items()
    }
    results = {name: proc.communicate(timeout=300) + (proc.returncode,) for name, proc in procs.items()}
    stdout, stderr, rc = results["grid"]
    assert rc == 0, stderr
    assert f"-> {tmp_path / 'grid'}" in stdout
    _, state, meta = trainer.restore(config, str(tmp_path / "grid"))
    assert meta["converted_from"] == str(npz)
    _assert_same({"params": state.params}, variables)
    assert tuple(trainer.load_run_config(str(tmp_path / "grid")).model.plane_type) == ("grid",)
    errors = {
        "planes": f"error: {npz}: the state dict does not match the model",
        "dvr": "error: --config: the config's method is 'dvr'; "
        "the converter reads the checkpoints of 'onet', 'convonet'",
    }
    for name, expected in errors.items():
        _, stderr, rc = results[name]
        lines = stderr.strip().splitlines()
        assert rc == 2 and "Traceback" not in stderr, stderr
        assert lines[-1].startswith(expected), stderr
        assert sum(line.startswith("error:") for line in lines) == 1, stderr
        assert not (tmp_path / name).exists()
    assert "config.model.unet3d: the checkpoint has a 3D U-Net" in results["planes"][1]


# --------------------------------------------------------------------------------------
# The original model (torch and CONVONET_SRC).
# --------------------------------------------------------------------------------------

_ORIGINAL_FILES = (
    "src/common.py",
    "src/layers.py",
    "src/encoder/pointnet.py",
    "src/encoder/unet.py",
    "src/encoder/unet3d.py",
    "src/conv_onet/models/__init__.py",
    "src/conv_onet/models/decoder.py",
)


def _missing_original() -> str:
    """Why the original's modules cannot be imported here ('' when they can)."""
    root = os.environ.get("CONVONET_SRC")
    if not root:
        return "CONVONET_SRC (a convolutional_occupancy_networks checkout) is not set"
    absent = [f for f in _ORIGINAL_FILES if not os.path.isfile(os.path.join(root, f))]
    return f"CONVONET_SRC={root} lacks {absent}" if absent else ""


needs_the_original = pytest.mark.skipif(bool(_missing_original()), reason=_missing_original() or "-")


def _torch_scatter(torch):
    """`torch_scatter`'s scatter_mean / scatter_max along the last axis (empty segments 0)."""

    def segments(src, index, out, dim_size):
        size = list(src.shape[:-1]) + [out.shape[-1] if out is not None else dim_size]
        return index.expand_as(src), size

    def scatter_mean(src, index, dim=-1, out=None, dim_size=None):
        index, size = segments(src, index, out, dim_size)
        total = (out.clone() if out is not None else src.new_zeros(size)).scatter_add_(-1, index, src)
        count = src.new_zeros(size).scatter_add_(-1, index, torch.ones_like(src))
        return total / count.clamp(min=1)

    def scatter_max(src, index, dim=-1, out=None, dim_size=None):
        index, size = segments(src, index, out, dim_size)
        values = src.new_zeros(size).scatter_reduce_(-1, index, src, "amax", include_self=False)
        return values, None

    module = types.ModuleType("torch_scatter")
    module.scatter_mean, module.scatter_max = scatter_mean, scatter_max
    return module


@pytest.fixture(scope="module")
def original():
    """The original's `src.encoder.pointnet` and `src.conv_onet.models`, imported from CONVONET_SRC."""
    torch = pytest.importorskip("torch")
    root = os.environ["CONVONET_SRC"]  # present and complete: the tests using this are `needs_the_original`
    names = ("src", "src.encoder", "src.conv_onet", "src.utils", "src.utils.libkdtree", "torch_scatter")
    saved = {k: v for k, v in sys.modules.items() if k in names or k.startswith("src.")}
    for name in names[:4]:  # Packages whose __init__ would import all the original (and its CUDA code).
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split("."))]
        sys.modules[name] = package
    sys.modules["src.utils.libkdtree"] = types.ModuleType("src.utils.libkdtree")
    sys.modules["src.utils.libkdtree"].KDTree = None  # Compiled; only the Chamfer distance uses it.
    sys.modules["torch_scatter"] = _torch_scatter(torch)
    try:
        pointnet = importlib.import_module("src.encoder.pointnet")
        models = importlib.import_module("src.conv_onet.models")
        yield torch, pointnet, models
    finally:
        for name in [k for k in sys.modules if k in names or k.startswith("src.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def _original_network(original, config, seed):
    """The original ConvolutionalOccupancyNetwork as its `get_model` builds it, random weights."""
    torch, pointnet, models = original
    m = config.model
    planes, grid = any(t != "grid" for t in m.plane_type), "grid" in m.plane_type
    encoder = pointnet.LocalPoolPointnet(
        c_dim=m.c_dim,
        dim=3,
        hidden_dim=m.encoder_hidden,
        scatter_type=m.scatter_type,
        unet=m.unet and planes,  # The original's configs set them only with planes / a grid.
        unet_kwargs={"depth": m.unet_depth, "merge_mode": "concat", "start_filts": m.unet_start_filts},
        unet3d=m.unet3d and grid,
        unet3d_kwargs={
            "num_levels": m.unet3d_levels,
            "f_maps": m.unet3d_f_maps,
            "in_channels": m.c_dim,
            "out_channels": m.c_dim,
        },
        plane_resolution=m.plane_resolution,
        grid_resolution=m.grid_resolution,
        plane_type=list(m.plane_type),
        padding=config.field.padding,
        n_blocks=m.encoder_blocks,
    )
    decoder = models.decoder.LocalDecoder(
        dim=3,
        c_dim=m.c_dim,
        hidden_size=m.decoder_hidden,
        n_blocks=m.decoder_blocks,
        sample_mode="bilinear",
        padding=config.field.padding,
    )
    net = models.ConvolutionalOccupancyNetwork(decoder, encoder, device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # Every weight random (the original zeroes the blocks' fc_1).
        for name, t in net.state_dict().items():
            fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else 4
            t.copy_(torch.randn(t.shape, generator=generator) / fan_in**0.5)
            if name.endswith("groupnorm.weight"):
                t.add_(1.0)
    return net.eval()


@needs_the_original
@pytest.mark.parametrize("variant", ["planes", "grid", "planes+grid"])
def test_an_original_checkpoint_gives_the_same_predictions(original, variant, tmp_path):
    torch = original[0]
    config = _config(variant)
    net = _original_network(original, config, seed=VARIANTS.index(variant))
    assert set(net.state_dict()) == {e["torch_name"] for e in convert.parameter_map(config)}
    path = str(tmp_path / "model.pt")
    torch.save({"model": net.state_dict(), "it": 5, "loss_val_best": np.float64(0.5)}, path)
    model, variables = convert.convert_checkpoint(path, config)

    rng = np.random.default_rng(1)
    inputs = rng.uniform(-0.5, 0.5, (2, config.data.pointcloud_n, 3)).astype(np.float32)
    points = rng.uniform(-0.55, 0.55, (2, 60, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(points), torch.from_numpy(inputs)).logits.numpy()
    logits = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(points), jnp.asarray(inputs)))
    assert logits.shape == expected.shape == (2, 60) and expected.std() > 0.02
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())

    # Our export is the original's state dict again, and loads into the original with strict=True.
    exported = convert.to_state_dict(variables, config)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(exported[k], v.numpy())
    net.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
