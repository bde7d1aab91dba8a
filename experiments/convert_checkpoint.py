"""Convert an original PyTorch (Convolutional) Occupancy Networks checkpoint into a run folder of ours.

  python -m experiments.convert_checkpoint --input onet_pcl2mesh.pt \
      --config experiments/configs/onet.py --config.model.c_dim=512 --output runs/onet_pcl_pretrained
  python -m experiments.main --config experiments/configs/onet.py \
      --workdir runs/onet_pcl_pretrained --mode generate
  python -m experiments.convert_checkpoint --input shapenet_3plane.pt \
      --config experiments/configs/convonet.py --output runs/convonet_3plane_pretrained

--input is the `.pt` file (needs torch; read with torch's safe loader, numpy scalars such
as the original's `loss_val_best` allowed) or a `.npz` of its state dict's arrays (no
torch needed; the converter's `NPZ_RECIPE` writes one where torch is). --config describes
the model the checkpoint holds, and its method ('onet' or 'convonet') picks the converter:
ONet's encoder, decoder, widths, c_dim, z_dim; ConvONet's feature planes / grid and their
resolutions (which the weights do not tell), widths and U-Nets. Every mismatch between
the two is reported by name. --output must be a new or empty folder; it gets config.json
and the converted variables as the `best` checkpoint, so generation, evaluation and
`experiments.sample` run on it directly.

This file only parses flags; the work is done by `implicit_fields.methods.<method>.convert`.
"""

import importlib

import jax
from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file of the model (get_config(arg)): path.py or path.py:arg.", lock_config=True
)
_INPUT = flags.DEFINE_string("input", None, "The original checkpoint: model.pt, or state.npz.")
_OUTPUT = flags.DEFINE_string("output", None, "New or empty run folder to write (config.json + best/).")
_ALLOW_PICKLE = flags.DEFINE_bool(
    "allow_pickle", False, "Let torch unpickle arbitrary objects in --input (only for trusted files)."
)
flags.mark_flags_as_required(["config", "input", "output"])

# The methods whose original checkpoints convert, and their converters.
CONVERTERS = {
    "onet": "implicit_fields.methods.onet.convert",
    "convonet": "implicit_fields.methods.convonet.convert",
}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    method = config.get("method")
    if method not in CONVERTERS:
        raise ValueError(
            f"--config: the config's method is {method!r}; the converter reads the checkpoints of "
            f"{', '.join(repr(m) for m in CONVERTERS)}"
        )
    from implicit_fields import trainer

    trainer.check_config(config)
    convert = importlib.import_module(CONVERTERS[method])
    convert.check_output(_OUTPUT.value)  # Before the (slow) conversion.
    _, variables = convert.convert_checkpoint(_INPUT.value, config, _ALLOW_PICKLE.value)
    workdir = convert.save_as_run(config, variables, _OUTPUT.value, source=_INPUT.value)
    count = sum(x.size for x in jax.tree.leaves(variables))
    print(f"converted {count:,} values from {_INPUT.value} -> {workdir}")


if __name__ == "__main__":
    cli.run_absl(main)
