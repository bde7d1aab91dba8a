"""Installation: the tests use the installed package, and `pip install .` makes one that works elsewhere."""

import importlib.metadata
import os
import subprocess
import sys
import venv

import experiment_configs
import implicit_fields

REPO = experiment_configs.REPO


def test_the_tests_import_the_installed_distribution():
    dist = importlib.metadata.distribution("implicit_fields")
    assert dist.version == implicit_fields.__version__
    requires = {
        r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for r in dist.requires
    }
    assert {
        "jax",
        "flax",
        "optax",
        "orbax-checkpoint",
        "trimesh",
        "pymcubes",
        "pillow",
        "tensorboardx",
    } <= requires


def test_pip_install_into_a_fresh_environment_works_from_another_folder(tmp_path):
    # A fresh virtual environment that sees this machine's packages (the dependencies),
    # with implicit_fields installed into it from the checkout (not editable).
    env_dir = tmp_path / "venv"
    # Without a pip of its own: this machine's pip and setuptools install into it.
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", REPO],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp_path),
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import implicit_fields, implicit_fields.methods.onet, implicit_fields.methods.dvr\n"
        "from implicit_fields import trainer\n"
        "print(implicit_fields.__file__)\n"
        "print(','.join(trainer.available_methods()))\n"
        "print(trainer.check_config(implicit_fields.methods.onet.get_config()).__name__)\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=300, cwd=str(elsewhere), env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    location, methods, checked = proc.stdout.strip().splitlines()
    assert location.startswith(str(env_dir)), location  # the copy installed into the environment
    assert methods.split(",") == ["convonet", "dvr", "nerf", "oflow", "onet", "texture_fields"]
    assert checked == "implicit_fields.methods.onet"
    assert sys.prefix != str(env_dir)
