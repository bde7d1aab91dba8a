"""The experiment configs of `experiments/configs/`, loaded by path as the CLI loads them.

`load("onet.py:img,tiny")` is what `--config experiments/configs/onet.py:img,tiny`
gives `experiments.main`. The tests import the library as installed; the
experiment configs are files of the repository, not part of the package.
"""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "experiments", "configs")

# Every method's smoke-test config: the end-to-end test runs each.
TINY = (
    "onet.py:pointcloud,tiny",
    "onet.py:voxels,tiny",
    "onet.py:img,tiny",
    "onet.py:unconditional,tiny",
    "convonet.py:planes,tiny",
    "dvr.py:tiny",
)


def load(spec: str):
    """The ConfigDict of `file.py[:arg]` in experiments/configs."""
    name, _, arg = spec.partition(":")
    path = os.path.join(CONFIG_DIR, name)
    module_spec = importlib.util.spec_from_file_location(f"experiment_config_{name[:-3]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
