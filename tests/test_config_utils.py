"""Configs: the shared base, key checks against a method's schema, a run's stored config."""

import json

import ml_collections
import pytest

import experiment_configs
from implicit_fields import config_utils, trainer
from implicit_fields.methods import dvr, nerf, oflow, onet, texture_fields

SHIPPED = [
    f"onet.py:{v},{s}"
    for v in ("pointcloud", "voxels", "img", "img_pixel", "img_textured", "unconditional")
    for s in ("full", "cpu", "tiny")
]
SHIPPED += [
    f"convonet.py:{v},{s}"
    for v in ("planes", "grid", "rooms", "rooms_grid", "rooms_sliding")
    for s in ("full", "cpu", "tiny")
]
SHIPPED += [
    f"texture_fields.py:{m},{s}" for m in ("conditional", "vae", "gan") for s in ("full", "cpu", "tiny")
]
SHIPPED += [
    f"oflow.py:{m},{s}" for m in ("pointcloud", "correspond", "generative") for s in ("full", "cpu", "tiny")
]
SHIPPED += [f"nerf.py:{s}{o}" for s in ("full", "cpu", "tiny") for o in ("", ",blender", ",specular")]
SHIPPED += ["nerf.py:synthetic", "nerf.py:full,synthetic"]
SHIPPED += ["onet.py", "onet.py:cpu", "dvr.py", "dvr.py:cpu", "dvr.py:full", "dvr.py:tiny"]


@pytest.mark.parametrize("spec", SHIPPED)
def test_every_shipped_config_passes_its_methods_checks(spec):
    config = experiment_configs.load(spec)
    assert trainer.check_config(config) is trainer.load_method(config.method)


def test_config_arguments_pick_variants_and_sizes():
    full, cpu, tiny = (experiment_configs.load(f"onet.py:img,{s}") for s in ("full", "cpu", "tiny"))
    assert full.model.encoder == cpu.model.encoder == tiny.model.encoder == "resnet18"
    assert full.train.num_steps == 300_000 and cpu.train.num_steps == 2000 and tiny.train.num_steps == 2
    assert experiment_configs.load("onet.py").to_dict() == onet.get_config().to_dict()
    assert experiment_configs.load("dvr.py").to_dict() == dvr.get_config().to_dict()
    assert experiment_configs.load("texture_fields.py").to_dict() == texture_fields.get_config().to_dict()
    assert experiment_configs.load("oflow.py").to_dict() == oflow.get_config().to_dict()
    nerf_full = experiment_configs.load("nerf.py:full").to_dict()
    assert nerf_full == nerf.get_config().to_dict()
    with pytest.raises(ValueError, match="unknown config argument 'huge'"):
        experiment_configs.load("nerf.py:cpu,huge")
    with pytest.raises(ValueError, match="unknown config argument 'huge'"):
        experiment_configs.load("onet.py:img,huge")
    with pytest.raises(ValueError, match="unknown config argument 'huge'"):
        experiment_configs.load("dvr.py:huge")


def test_the_field_has_one_home():
    for method in (onet, dvr):
        config = method.get_config()
        assert set(config.field) == {"threshold", "padding"}
        flat = json.dumps(config.to_dict())
        assert flat.count('"threshold"') == 1 and flat.count('"padding"') == 1
    assert onet.get_config().field.threshold == 0.2 and dvr.get_config().field.threshold == 0.5


def test_unknown_key_in_a_config_is_a_clear_error():
    config = experiment_configs.load("onet.py:tiny")
    config.train.lerning_rate = 1e-3
    with pytest.raises(
        ValueError, match=r"unknown config key\(s\) in my_config.py: 'train.lerning_rate'.*did you mean"
    ):
        config_utils.check_keys(config, onet.get_config(), source="my_config.py")


def test_load_run_config_merges_defaults_and_rejects_unknown_keys(tmp_path):
    reference = ml_collections.ConfigDict({"a": 1, "b": {"c": 2, "d": 3}})
    (tmp_path / "config.json").write_text(json.dumps({"a": 5, "b": {"c": 7}}))
    loaded = config_utils.load_run_config(str(tmp_path), reference)
    assert loaded.to_dict() == {"a": 5, "b": {"c": 7, "d": 3}}
    (tmp_path / "config.json").write_text(json.dumps({"a": 5, "e": 1}))
    with pytest.raises(ValueError, match=r"config.json: 'e'"):
        config_utils.load_run_config(str(tmp_path), reference)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        config_utils.read_run_config(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="training run's workdir"):
        config_utils.read_run_config(str(tmp_path / "nowhere"))


def test_check_int_names_the_key_and_the_range():
    config = ml_collections.ConfigDict({"train": {"steps": 5, "ratio": 0.5, "flag": True}})
    config_utils.check_int(config, "train.steps", minimum=5)
    with pytest.raises(ValueError, match=r"config.train.steps=5 must be an integer >= 6"):
        config_utils.check_int(config, "train.steps", minimum=6)
    for key in ("train.ratio", "train.flag"):
        with pytest.raises(ValueError, match=f"config.{key}="):
            config_utils.check_int(config, key, minimum=0)
