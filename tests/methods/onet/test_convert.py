"""The PyTorch checkpoint converter: names, layouts, errors, and (with torch) equal predictions.

The torch part re-implements the original modules' layer structure (`im2mesh/layers.py`,
`onet/models/decoder.py`, `encoder/pointnet.py`, `encoder/voxels.py`,
`onet/models/encoder_latent.py`: parameter names, Linear vs Conv1d(k=1) vs Conv3d, batch
norms without affine parameters) and checks that a state dict of those modules converts to
variables giving the same outputs, and that our export loads into them with strict=True.
It is skipped when torch is not installed.
"""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import experiment_configs
from implicit_fields import trainer
from implicit_fields.methods.onet import config as onet_config
from implicit_fields.methods.onet import convert
from implicit_fields.methods.onet import model as models

# --------------------------------------------------------------------------------------
# Small models of each kind (the original layer structure at small widths).
# --------------------------------------------------------------------------------------


def _config(kind):
    config = onet_config.get_config()
    m = config.model
    if kind == "pointcloud":
        m.c_dim, m.encoder_hidden, m.decoder_hidden = 12, 10, 16
    elif kind == "voxels":
        config.data.input_type = "voxels"
        m.encoder, m.c_dim, m.encoder_hidden, m.decoder_hidden = "voxel_simple", 12, 4, 16
    elif kind == "img":
        config.data.input_type = "img"
        config.data.img_size = 32
        m.encoder, m.c_dim, m.encoder_hidden, m.decoder_hidden = "resnet18", 12, 4, 16
    elif kind == "unconditional":
        config.data.input_type = ""
        m.encoder, m.c_dim, m.decoder, m.decoder_hidden, m.z_dim, m.encoder_latent_hidden = (
            "",
            0,
            "simple",
            16,
            6,
            8,
        )
    return config


def _random_variables(model, config, seed=0):
    """Our variables with every parameter and running statistic random (none trivial)."""
    shapes = convert.variable_shapes(model, config)
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    values = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        name = jax.tree_util.keystr(path)
        if name.endswith("['var']"):
            values.append(jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32))
        else:
            values.append(jnp.asarray(rng.normal(0.0, 0.3, leaf.shape), jnp.float32))
    return jax.tree.unflatten(treedef, values)


@pytest.mark.parametrize("kind", ["pointcloud", "voxels", "img", "unconditional"])
def test_round_trip_through_the_original_layout(kind):
    config = _config(kind)
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model)
    back = convert.from_state_dict(state, model, variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(back) == jax.tree.structure(jax.tree.map(np.asarray, variables))
    # The original's names and layouts.
    if kind == "pointcloud":
        assert state["encoder.fc_pos.weight"].shape == (20, 3)  # Linear (out, in)
        assert state["encoder.block_0.shortcut.weight"].shape == (10, 20)
        assert "encoder.block_0.shortcut.bias" not in state
        assert state["decoder.fc_p.weight"].shape == (16, 3, 1)  # Conv1d (out, in, 1)
        assert state["decoder.block4.fc_1.weight"].shape == (16, 16, 1)
        assert state["decoder.block0.bn_0.conv_gamma.weight"].shape == (16, 12, 1)
        assert state["decoder.fc_out.weight"].shape == (1, 16, 1)
        np.testing.assert_array_equal(
            state["decoder.block2.bn_1.bn.running_var"],
            variables["batch_stats"]["decoder_net"]["block2"]["bn_1"]["bn"]["var"],
        )
        assert state["decoder.bn.bn.num_batches_tracked"].dtype == np.int64
        # A Conv1d weight is our kernel transposed, with a trailing axis of 1.
        np.testing.assert_array_equal(
            state["decoder.block1.fc_0.weight"][:, :, 0],
            np.asarray(variables["params"]["decoder_net"]["block1"]["fc_0"]["kernel"]).T,
        )
    elif kind == "voxels":
        assert state["encoder.conv_in.weight"].shape == (4, 1, 3, 3, 3)  # Conv3d (out, in, k, k, k)
        assert state["encoder.conv_3.weight"].shape == (64, 32, 3, 3, 3)
        assert state["encoder.fc.weight"].shape == (12, 64 * 8)
    elif kind == "img":  # torchvision's resnet18 names under `features`, then `fc`
        assert state["encoder.features.conv1.weight"].shape == (4, 3, 7, 7)  # Conv2d (out, in, k, k)
        assert state["encoder.features.bn1.weight"].shape == (4,)
        assert state["encoder.features.layer1.1.conv2.weight"].shape == (4, 4, 3, 3)
        assert state["encoder.features.layer2.0.downsample.0.weight"].shape == (8, 4, 1, 1)
        assert state["encoder.features.layer4.0.downsample.1.running_var"].shape == (32,)
        assert "encoder.features.layer1.0.downsample.0.weight" not in state
        assert "encoder.features.conv1.bias" not in state
        assert state["encoder.fc.weight"].shape == (12, 32)
    else:
        assert state["decoder.fc_z.weight"].shape == (16, 6)
        assert "decoder.fc_c.weight" not in state
        assert state["encoder_latent.fc_0.weight"].shape == (8, 1)
        assert state["encoder_latent.fc_2.weight"].shape == (8, 16)
        assert state["encoder_latent.fc_logstd.weight"].shape == (6, 8)
        assert not any(k.startswith("encoder.") for k in state)


def test_legacy_cbn_checkpoints_are_recognised():
    config = _config("pointcloud")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model, legacy=True)
    assert state["decoder.block0.bn_0.fc_gamma.weight"].shape == (16, 12)  # Linear in the legacy CBN
    back = convert.from_state_dict(state, model, variables)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(back)):
        np.testing.assert_array_equal(a, b)


def test_every_mismatch_is_reported_by_name():
    config = _config("pointcloud")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model)
    del state["decoder.block3.fc_0.bias"]
    state["encoder.features.conv1.weight"] = np.zeros((64, 3, 7, 7), np.float32)  # an image model's
    state["decoder.fc_p.weight"] = state["decoder.fc_p.weight"][:, :, 0]  # Linear where Conv1d is due
    with pytest.raises(convert.ConversionError) as err:
        convert.from_state_dict(state, model, variables)
    msg = str(err.value)
    assert "missing from the checkpoint (1):\n    decoder.block3.fc_0.bias" in msg
    assert "in the checkpoint but not in the model (1):\n    encoder.features.conv1.weight" in msg
    assert "decoder.fc_p.weight: checkpoint (16, 3), model expects (16, 3, 1)" in msg
    assert "decoder='cbatchnorm'" in msg
    # num_batches_tracked entries are ignored, not unexpected.
    assert "num_batches_tracked" not in msg


def test_npz_state_dict_with_a_data_parallel_prefix(tmp_path):
    config = _config("unconditional")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model)
    path = tmp_path / "state.npz"
    np.savez(path, **{f"module.{k}": v for k, v in state.items()})
    loaded = convert.load_state_dict(str(path))
    assert set(loaded) == set(state)
    _, converted = convert.convert_checkpoint(str(path), config)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(converted)):
        np.testing.assert_array_equal(a, b)


def test_converted_run_folder_restores(tmp_path):
    config = _config("pointcloud")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    workdir = convert.save_as_run(config, variables, str(tmp_path / "run"), source="x.pt")
    _, state, meta = trainer.restore(config, workdir)
    assert meta["step"] == 0 and meta["converted_from"].endswith("x.pt")
    with pytest.raises(ValueError, match=r"already holds a run \(config.json, best\)"):
        convert.save_as_run(config, variables, workdir)
    for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(variables["batch_stats"]), jax.tree.leaves(state.batch_stats)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
@pytest.mark.parametrize("key", ["decoder.fc_p.weight", "encoder.block_0.fc_0.bias"])
def test_integer_weights_are_reported_by_name_and_dtype(dtype, key):
    config = _config("pointcloud")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model)
    state[key] = np.ones(state[key].shape, dtype)
    with pytest.raises(convert.ConversionError) as err:
        convert.from_state_dict(state, model, variables)
    assert f"{key}: dtype {np.dtype(dtype)}, expected floating point" in str(err.value)
    # float16 / float64 weights are floats: converted to float32.
    state[key] = np.ones(state[key].shape, np.float64)
    back = convert.from_state_dict(
        dict(state, **{"decoder.fc_out.bias": state["decoder.fc_out.bias"].astype(np.float16)}),
        model,
        variables,
    )
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(back))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_reported_by_name(bad):
    config = _config("pointcloud")
    model = models.create_model(config.model)
    variables = _random_variables(model, config)
    state = convert.to_state_dict(variables, model)
    state["decoder.block1.fc_0.weight"][0, :2] = bad
    with pytest.raises(
        convert.ConversionError, match=r"NaN or infinite values \(1\):\n    decoder.block1.fc_0.weight: 2 of"
    ):
        convert.from_state_dict(state, model, variables)


def _output_case(tmp_path, case):
    if case == "file":
        (tmp_path / "out").write_text("x")
        return tmp_path / "out", "is a file"
    if case == "parent is a file":
        (tmp_path / "f").write_text("x")
        return tmp_path / "f" / "run", "f is a file"
    (tmp_path / "out").mkdir()
    if case == "run":
        (tmp_path / "out" / "config.json").write_text("{}")
        (tmp_path / "out" / "best").mkdir()
        return tmp_path / "out", "already holds a run (config.json, best)"
    (tmp_path / "out" / "notes.txt").write_text("mine")
    return tmp_path / "out", "already holds notes.txt"


@pytest.mark.parametrize("case", ["file", "parent is a file", "run", "other files"])
def test_save_as_run_writes_nothing_into_a_used_output(tmp_path, case):
    path, message = _output_case(tmp_path, case)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    config = _config("unconditional")
    model = models.create_model(config.model)
    with pytest.raises(ValueError, match=re.escape(message)):
        convert.save_as_run(config, _random_variables(model, config), str(path))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def _other_variables(case):
    """Variables that are not those of `_config('pointcloud')`'s model, and what the error names."""
    config = _config("pointcloud")
    variables = _random_variables(models.create_model(config.model), config)
    if case == "another model's":
        other = _config("voxels")
        variables = _random_variables(models.create_model(other.model), other)
        return variables, "params/encoder_net/block_0/fc_0/bias: missing, the model's (10,); "
    if case == "no params":
        return {"batch_stats": variables["batch_stats"]}, "(no params; nothing was written)"
    if case == "an extra layer":
        variables["params"]["decoder_net"]["fc_extra"] = {"bias": jnp.zeros(3)}
        return variables, "(params/decoder_net/fc_extra/bias: not in the model; nothing was written)"
    stats = variables["batch_stats"]["decoder_net"]["bn"]["bn"]
    stats["var"] = stats["var"][:-1]
    return variables, "(batch_stats/decoder_net/bn/bn/var: (15,), the model's (16,); nothing was written)"


@pytest.mark.parametrize(
    "case", ["another model's", "no params", "an extra layer", "a wrong batch-norm shape"]
)
def test_save_as_run_refuses_variables_of_another_model(tmp_path, case):
    config = _config("pointcloud")
    variables, named = _other_variables(case)
    with pytest.raises(ValueError, match="the variables are not those of the config's model") as err:
        convert.save_as_run(config, variables, str(tmp_path / "run"))
    assert named in str(err.value)
    assert not (tmp_path / "run").exists()


def _cli(*args):
    """Starts the converter's command line (in the repository, as a user runs it)."""
    env = dict(os.environ, IMPLICIT_FIELDS_DEBUG="0", JAX_PLATFORMS="cpu")
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.convert_checkpoint", *args],
        cwd=experiment_configs.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_one_line_error(proc, *expected):
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], stderr
    for text in expected:
        assert text in errors[0], stderr


def test_cli_errors_are_one_line(tmp_path):
    """Each case in its own folder; the processes run side by side (each imports JAX)."""
    config = experiment_configs.load("onet.py:tiny")
    model = models.create_model(config.model)
    state = convert.to_state_dict(_random_variables(model, config), model)
    runs = {}
    for case in ("file", "run", "int64 weight"):
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        weights = dict(state)
        if case == "int64 weight":
            weights["decoder.fc_p.weight"] = weights["decoder.fc_p.weight"].astype(np.int64)
            output, expected = folder / "out", ("decoder.fc_p.weight: dtype int64, expected floating point",)
        else:
            output, message = _output_case(folder, case)
            expected = (str(output), message)
        np.savez(folder / "state.npz", **weights)
        args = ["--config", "experiments/configs/onet.py:tiny", "--input", str(folder / "state.npz")]
        runs[case] = (_cli(*args, "--output", str(output)), output, expected)
    for case, (proc, output, expected) in runs.items():
        _assert_one_line_error(proc, *expected)
        if case == "run":
            assert sorted(os.listdir(output)) == ["best", "config.json"]
            assert (output / "config.json").read_text() == "{}"  # Not overwritten.
        if case == "int64 weight":
            assert not output.exists()


# --------------------------------------------------------------------------------------
# With torch: the original modules' structure and outputs.
# --------------------------------------------------------------------------------------


def _torch_original(kind, config):
    """A torch OccupancyNetwork with the original layer structure for `config`."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional
    m = config.model

    class ResnetBlockFC(nn.Module):
        def __init__(self, size_in, size_out=None):
            super().__init__()
            size_out = size_out or size_in
            size_h = min(size_in, size_out)
            self.fc_0 = nn.Linear(size_in, size_h)
            self.fc_1 = nn.Linear(size_h, size_out)
            self.shortcut = nn.Linear(size_in, size_out, bias=False) if size_in != size_out else None

        def forward(self, x):
            dx = self.fc_1(F.relu(self.fc_0(F.relu(x))))
            return (x if self.shortcut is None else self.shortcut(x)) + dx

    class CBatchNorm1d(nn.Module):
        def __init__(self, c_dim, f_dim):
            super().__init__()
            self.conv_gamma = nn.Conv1d(c_dim, f_dim, 1)
            self.conv_beta = nn.Conv1d(c_dim, f_dim, 1)
            self.bn = nn.BatchNorm1d(f_dim, affine=False)

        def forward(self, x, c):  # x [B, F, T], c [B, C]
            c = c.unsqueeze(2)
            return self.conv_gamma(c) * self.bn(x) + self.conv_beta(c)

    class CResnetBlockConv1d(nn.Module):
        def __init__(self, c_dim, size):
            super().__init__()
            self.bn_0 = CBatchNorm1d(c_dim, size)
            self.bn_1 = CBatchNorm1d(c_dim, size)
            self.fc_0 = nn.Conv1d(size, size, 1)
            self.fc_1 = nn.Conv1d(size, size, 1)

        def forward(self, x, c):
            net = self.fc_0(F.relu(self.bn_0(x, c)))
            return x + self.fc_1(F.relu(self.bn_1(net, c)))

    class DecoderCBatchNorm(nn.Module):
        def __init__(self, z_dim, c_dim, h):
            super().__init__()
            self.z_dim = z_dim
            if z_dim:
                self.fc_z = nn.Linear(z_dim, h)
            self.fc_p = nn.Conv1d(3, h, 1)
            for i in range(5):
                setattr(self, f"block{i}", CResnetBlockConv1d(c_dim, h))
            self.bn = CBatchNorm1d(c_dim, h)
            self.fc_out = nn.Conv1d(h, 1, 1)

        def forward(self, p, z, c):
            net = self.fc_p(p.transpose(1, 2))
            if self.z_dim:
                net = net + self.fc_z(z).unsqueeze(2)
            for i in range(5):
                net = getattr(self, f"block{i}")(net, c)
            return self.fc_out(F.relu(self.bn(net, c))).squeeze(1)

    class Decoder(nn.Module):  # 'simple'
        def __init__(self, z_dim, c_dim, h):
            super().__init__()
            self.z_dim, self.c_dim = z_dim, c_dim
            self.fc_p = nn.Linear(3, h)
            if z_dim:
                self.fc_z = nn.Linear(z_dim, h)
            if c_dim:
                self.fc_c = nn.Linear(c_dim, h)
            for i in range(5):
                setattr(self, f"block{i}", ResnetBlockFC(h))
            self.fc_out = nn.Linear(h, 1)

        def forward(self, p, z, c):
            net = self.fc_p(p)
            if self.z_dim:
                net = net + self.fc_z(z).unsqueeze(1)
            if self.c_dim:
                net = net + self.fc_c(c).unsqueeze(1)
            for i in range(5):
                net = getattr(self, f"block{i}")(net)
            return self.fc_out(F.relu(net)).squeeze(-1)

    class ResnetPointnet(nn.Module):
        def __init__(self, c_dim, h):
            super().__init__()
            self.fc_pos = nn.Linear(3, 2 * h)
            for i in range(5):
                setattr(self, f"block_{i}", ResnetBlockFC(2 * h, h))
            self.fc_c = nn.Linear(h, c_dim)

        def forward(self, p):
            net = self.block_0(self.fc_pos(p))
            for i in range(1, 5):
                pooled = net.max(dim=1, keepdim=True)[0].expand(net.size())
                net = getattr(self, f"block_{i}")(torch.cat([net, pooled], dim=2))
            return self.fc_c(F.relu(net.max(dim=1)[0]))

    class VoxelEncoder(nn.Module):
        def __init__(self, c_dim, w):
            super().__init__()
            self.conv_in = nn.Conv3d(1, w, 3, padding=1)
            for i in range(4):
                setattr(self, f"conv_{i}", nn.Conv3d(w * 2**i, w * 2 ** (i + 1), 3, padding=1, stride=2))
            self.fc = nn.Linear(16 * w * 8, c_dim)

        def forward(self, x):
            net = self.conv_in(x.unsqueeze(1))
            for i in range(4):
                net = getattr(self, f"conv_{i}")(F.relu(net))
            return self.fc(F.relu(net.reshape(x.shape[0], -1)))

    class BasicBlock(nn.Module):  # torchvision.models.resnet.BasicBlock
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18Features(nn.Module):  # torchvision's resnet18 with fc = nn.Sequential()
        def __init__(self, w):
            super().__init__()
            self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(w)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            cin = w
            for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2))):
                blocks = [BasicBlock(cin, w * mult, stride), BasicBlock(w * mult, w * mult, 1)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
                cin = w * mult
            self.fc = nn.Sequential()

        def forward(self, x):
            x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
            for i in range(4):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    class Resnet18(nn.Module):  # im2mesh/encoder/conv.py: Resnet18 (normalize, use_linear)
        def __init__(self, c_dim, w):
            super().__init__()
            self.features = ResNet18Features(w)
            self.fc = nn.Linear(8 * w, c_dim)

        def forward(self, x):  # x: [B, 3, H, W]
            mean = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
            return self.fc(self.features((x - mean) / std))

    class LatentEncoder(nn.Module):
        def __init__(self, z_dim, c_dim, h):
            super().__init__()
            self.c_dim = c_dim
            self.fc_pos = nn.Linear(3, h)
            if c_dim:
                self.fc_c = nn.Linear(c_dim, h)
            self.fc_0 = nn.Linear(1, h)
            self.fc_1 = nn.Linear(h, h)
            self.fc_2 = nn.Linear(2 * h, h)
            self.fc_3 = nn.Linear(2 * h, h)
            self.fc_mean = nn.Linear(h, z_dim)
            self.fc_logstd = nn.Linear(h, z_dim)

        def forward(self, p, x, c):
            net = self.fc_0(x.unsqueeze(-1)) + self.fc_pos(p)
            if self.c_dim:
                net = net + self.fc_c(c).unsqueeze(1)
            net = self.fc_1(F.relu(net))
            net = torch.cat([net, net.max(dim=1, keepdim=True)[0].expand(net.size())], dim=2)
            net = self.fc_2(F.relu(net))
            net = torch.cat([net, net.max(dim=1, keepdim=True)[0].expand(net.size())], dim=2)
            net = self.fc_3(F.relu(net)).max(dim=1)[0]
            return self.fc_mean(net), self.fc_logstd(net)

    class OccupancyNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            c_dim = m.c_dim if m.encoder else 0
            if m.decoder == "cbatchnorm":
                self.decoder = DecoderCBatchNorm(m.z_dim, c_dim, m.decoder_hidden)
            else:
                self.decoder = Decoder(m.z_dim, c_dim, m.decoder_hidden)
            if m.encoder == "pointnet_resnet":
                self.encoder = ResnetPointnet(c_dim, m.encoder_hidden)
            elif m.encoder == "voxel_simple":
                self.encoder = VoxelEncoder(c_dim, m.encoder_hidden)
            elif m.encoder == "resnet18":
                self.encoder = Resnet18(c_dim, m.encoder_hidden)
            if m.z_dim:
                self.encoder_latent = LatentEncoder(m.z_dim, c_dim, m.encoder_latent_hidden)

    net = OccupancyNetwork()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) * 1.5 + 0.5)
            elif t.is_floating_point():
                fan_in = int(np.prod(t.shape[1:])) if t.dim() > 1 else 9
                t.copy_(torch.randn(t.shape, generator=gen) / fan_in**0.5)
    return torch, net.eval()


def _inputs(kind, rng):
    if kind == "pointcloud":
        return rng.normal(0, 0.3, (2, 40, 3)).astype(np.float32)
    if kind == "voxels":
        return (rng.uniform(size=(2, 32, 32, 32)) < 0.3).astype(np.float32)
    if kind == "img":
        return rng.uniform(size=(2, 32, 32, 3)).astype(np.float32)
    return np.zeros((2, 0), np.float32)


@pytest.mark.parametrize(
    "kind,fmt", [("pointcloud", "pt"), ("voxels", "npz"), ("img", "pt"), ("unconditional", "pt")]
)
def test_original_checkpoint_gives_the_same_predictions(kind, fmt, tmp_path):
    config = _config(kind)
    torch, net = _torch_original(kind, config)
    path = str(tmp_path / f"model.{fmt}")
    if fmt == "pt":
        # As the original's CheckpointIO: the state dict under 'model', plus scalars.
        torch.save({"model": net.state_dict(), "it": 123, "loss_val_best": np.float64(0.5)}, path)
    else:
        np.savez(path, **{k: v.numpy() for k, v in net.state_dict().items()})
    model, variables = convert.convert_checkpoint(path, config)

    rng = np.random.default_rng(0)
    points = rng.uniform(-0.55, 0.55, (2, 50, 3)).astype(np.float32)
    inputs = _inputs(kind, rng)
    with torch.no_grad():
        tp = torch.from_numpy(points)
        torch_inputs = torch.from_numpy(inputs)
        if kind == "img":  # ours NHWC, PyTorch NCHW
            torch_inputs = torch_inputs.permute(0, 3, 1, 2)
        c = net.encoder(torch_inputs) if config.model.encoder else torch.zeros(2, 0)
        z = torch.zeros(2, 0)
        if config.model.z_dim:
            occ = torch.from_numpy((rng.uniform(size=(2, 50)) < 0.4).astype(np.float32))
            mean_t, logstd_t = net.encoder_latent(tp, occ, c)
            z = mean_t + 0.5
        expected = net.decoder(tp, z, c).numpy()
    c_ours = model.apply(variables, jnp.asarray(inputs), method=models.OccupancyNetwork.encode)
    np.testing.assert_allclose(c_ours, c.numpy(), rtol=1e-5, atol=1e-5)
    z_ours = None
    if config.model.z_dim:
        mean, logstd = model.apply(
            variables,
            jnp.asarray(points),
            jnp.asarray(occ.numpy()),
            c_ours,
            method=models.OccupancyNetwork.infer_z,
        )
        np.testing.assert_allclose(mean, mean_t.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logstd, logstd_t.numpy(), rtol=1e-5, atol=1e-5)
        z_ours = jnp.asarray(z.numpy())
    logits = model.apply(
        variables, jnp.asarray(points), c_ours, z_ours, method=models.OccupancyNetwork.decode
    )
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["pointcloud", "voxels", "img", "unconditional"])
def test_our_export_loads_strictly_into_the_original_modules(kind):
    config = _config(kind)
    torch, net = _torch_original(kind, config)
    model = models.create_model(config.model)
    variables = _random_variables(model, config, seed=3)
    state = {k: torch.from_numpy(np.array(v)) for k, v in convert.to_state_dict(variables, model).items()}
    net.load_state_dict(state, strict=True)  # every name and shape of the original structure
    assert set(state) == set(net.state_dict())
