"""Every config value is checked against its meaning before any work, and the error names the key.

For each method, every key of its schema has a check (`config_utils.COMMON_CHECKS` plus the
method's `config.CHECKS`), and values that no key accepts (NaN, inf, -1, a wrong type, an empty
name, an unknown choice) are refused with `config.<key>=<value>` in the message.
"""

import math
import os

import ml_collections
import pytest

from implicit_fields import config_utils, trainer
from implicit_fields.methods.convonet import config as convonet_config
from implicit_fields.methods.dvr import config as dvr_config
from implicit_fields.methods.nerf import config as nerf_config
from implicit_fields.methods.oflow import config as oflow_config
from implicit_fields.methods.onet import config as onet_config
from implicit_fields.methods.texture_fields import config as texture_fields_config

METHODS = {
    "onet": onet_config,
    "dvr": dvr_config,
    "convonet": convonet_config,
    "texture_fields": texture_fields_config,
    "oflow": oflow_config,
    "nerf": nerf_config,
}


def _checks(name):
    return {**config_utils.COMMON_CHECKS, **METHODS[name].CHECKS}


def _with(config, key, value):
    """A copy of `config` with `key` set to `value`, whatever its type (ConfigDicts are typed)."""
    plain = config.to_dict()
    node = plain
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return ml_collections.ConfigDict(plain)


def _bad_values(check, default):
    if isinstance(check, (config_utils.Int, config_utils.Float)):
        return [math.nan, math.inf, -1, "3", None, True]
    if isinstance(check, config_utils.Bool):
        return ["yes", 1, None]
    if isinstance(check, config_utils.Choice):
        return ["no-such-choice", 3, None]
    if isinstance(check, config_utils.Str):
        return [3, None] if check.empty else ["", "  ", 3, None]
    if isinstance(check, (config_utils.Strings, config_utils.Steps)):
        return [5, "abc", [3.5], None]
    if isinstance(check, config_utils.Ints):
        return [5, (), [3.5], [check.maximum + 1], [check.minimum, check.minimum], None]
    raise AssertionError(f"no bad values for {check!r}")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_key_of_every_method_has_a_check(name):
    assert trainer.available_methods() == sorted(METHODS)
    config = METHODS[name].get_config()
    assert config_utils.unchecked_keys(config, _checks(name)) == []
    trainer.check_config(config)  # The defaults pass their own checks.


@pytest.mark.parametrize("name", sorted(METHODS))
def test_values_no_key_accepts_are_refused_naming_the_key(name):
    defaults = METHODS[name].get_config()
    flat = config_utils._flatten(defaults)
    missed = []
    for key, check in _checks(name).items():
        if key == "method":
            continue
        for value in _bad_values(check, flat[key]):
            try:
                trainer.check_config(_with(defaults, key, value))
            except ValueError as e:
                if f"config.{key}=" not in str(e):
                    missed.append(f"{key}={value!r}: message {e}")
            else:
                missed.append(f"{key}={value!r}: accepted")
    assert missed == []


@pytest.mark.parametrize(
    "name, key, value",
    [
        ("onet", "data.points_subsample", 0),
        ("onet", "train.num_steps", 0),
        ("onet", "train.batch_size", 0),
        ("onet", "train.checkpoint_every", 0),
        ("onet", "logging.log_every", 0),
        ("onet", "generate.resolution", 0),
        ("onet", "generate.resolution0", 0),
        ("onet", "eval.n_samples", 0),
        ("onet", "data.pointcloud_n", 0),
        ("onet", "optim.learning_rate", 0.0),
        ("onet", "field.threshold", 1.0),
        ("dvr", "rays.per_step", 0),
        ("dvr", "data.n_views", 1),
        ("dvr", "loss.lambda_rgb", -1.0),
        ("dvr", "rays.render_steps", 1),
        ("dvr", "eval.n_points", 0),
        ("texture_fields", "train.batch_size", 0),
        ("texture_fields", "data.pointcloud_n", 0),
        ("texture_fields", "eval.ssim_data_range", 0.0),
        ("texture_fields", "loss.r1", -1.0),
    ],
)
def test_degenerate_settings_stop_before_any_work(name, key, value, tmp_path):
    config = _with(METHODS[name].get_config(), key, value)
    config.data.path = str(tmp_path / "data")
    with pytest.raises(ValueError, match=rf"config\.{key}={value!r} must be"):
        trainer.run(config, str(tmp_path / "run"), "all")
    assert os.listdir(tmp_path) == []  # No workdir, no data.


@pytest.mark.parametrize(
    "name, changes, message",
    [
        ("onet", {"model.encoder": "resnet18"}, r"config.model.encoder='resnet18' reads 'img' inputs"),
        ("onet", {"data.input_type": "voxels"}, r"reads 'pointcloud' inputs, but config.data.input_type"),
        ("onet", {"model.c_dim": 0}, r"config.model.c_dim=0: the 'pointnet_resnet' encoder"),
        ("dvr", {"rays.steps_max": 32}, r"config.rays.steps_max=32 must be >= config.rays.steps_start=64"),
        ("dvr", {"data.val_views": 24}, r"config.data.val_views=24 must be in \[0, 24\)"),
        ("dvr", {"data.builtin_category": "spaceship"}, r"config.data.builtin_category: unknown category"),
        (
            "texture_fields",
            {"model.kind": "gan", "model.encoder": "", "data.img_size": 96},
            r"img_size=96 must be 4",
        ),
        ("texture_fields", {"model.kind": "vae"}, r"config.model.encoder='resnet18': the vae model has no"),
        ("texture_fields", {"model.encoder": ""}, r"config.model.encoder='': the conditional model needs"),
        (
            "texture_fields",
            {"data.builtin_categories": ("spaceship",)},
            r"config.data.builtin_categories: unknown",
        ),
        ("texture_fields", {"loss.w_pix": 0.0}, r"config.loss.w_pix=0: the conditional model's only loss"),
        ("oflow", {"data.builtin_frames": 16}, r"config.data.builtin_frames=16 is shorter than one window"),
        ("oflow", {"model.c_dim": 0}, r"config.model.c_dim=0: the encoders need"),
        ("oflow", {"loss.recon": False}, r"config.loss.recon=False and config.loss.corr=False"),
        ("oflow", {"model.encoder": ""}, r"config.model.decoder='cbatchnorm' needs the code of frame 0"),
        ("oflow", {"generate.picture_frames": 18}, r"config.generate.picture_frames=18 is more than the 17"),
        ("oflow", {"data.builtin_categories": ("spaceship",)}, r"config.data.builtin_categories: unknown"),
        ("nerf", {"data.near": 2.0}, r"config.data.near=2.0, config.data.far=0.0: give both"),
        ("nerf", {"data.near": 6.0, "data.far": 2.0}, r"config.data.near=6.0, config.data.far=2.0: give"),
        ("nerf", {"data.val_views": 0}, r"config.data.val_views=0 must be in \[1, 24\)"),
        ("nerf", {"data.builtin_category": "spaceship"}, r"config.data.builtin_category: "),
        ("nerf", {"optim.final_lr_fraction": 0.0}, r"config.optim.final_lr_fraction=0.0: must be > 0"),
    ],
)
def test_values_that_contradict_each_other_are_named(name, changes, message):
    config = METHODS[name].get_config()
    for key, value in changes.items():
        config = _with(config, key, value)
    with pytest.raises(ValueError, match=message):
        trainer.check_config(config)
