"""Meshes from a trained ConvONet: each object encoded once, MISE decoding only.

For every object of the split its deterministic noisy point cloud is encoded
once into feature planes / a grid (the U-Nets run once per object); MISE then
calls only the local decoder at its query points, with the features as an
argument, so a new object does not compile anything new. Meshes, their inputs,
`meshes/generation.json` and `reconstruction.png` are written as ONet's are
(`data.reconstruction.mesh_split`).
"""

import functools
import logging
import os
from typing import Dict, List, Optional

import jax

from implicit_fields import trainer
from implicit_fields.data import builtin, datasets, reconstruction
from implicit_fields.methods.convonet import model as convonet_model

logger = logging.getLogger(__name__)


def create_field_fns(model: convonet_model.ConvolutionalOccupancyNetwork, variables):
    """Jitted `encode(points [n, 3]) -> features` and `decode(features, points [N, 3]) -> logits [N]`."""

    @jax.jit
    def encode(inputs):
        c = model.apply(variables, inputs[None], method=convonet_model.ConvolutionalOccupancyNetwork.encode)
        return jax.tree_util.tree_map(lambda x: x[0], c)

    @jax.jit
    def decode(c, points):
        cb = jax.tree_util.tree_map(lambda x: x[None], c)
        return model.apply(
            variables, points[None], cb, method=convonet_model.ConvolutionalOccupancyNetwork.decode
        )[0]

    return encode, decode


def generate_meshes(config, workdir: str, model, variables, split: str = None, meta: Optional[Dict] = None):
    """Meshes every object of `split` (default `config.generate.split`), recorded as ONet's.

    Returns:
      One record per object: category, model, mesh path, seconds, query count.
    """
    meta = dict(meta or {})
    gen = config.generate
    split = split or gen.split
    ds = datasets.from_config(config.data, split, cache=False)
    count = len(ds) if not gen.max_objects else min(gen.max_objects, len(ds))
    encode, decode = create_field_fns(model, variables)

    def field_fn(i, data, inputs):
        del i, data
        return functools.partial(decode, encode(inputs)), {}

    out_dir = os.path.join(workdir, "meshes")
    record_path = os.path.join(out_dir, "generation.json")
    os.makedirs(out_dir, exist_ok=True)
    record = trainer.start_generation(
        record_path, meta, split=split, num_objects=count, settings=gen.to_dict()
    )
    # Bilinear feature sampling makes the field curved inside a cell: refinement is second order.
    records = reconstruction.mesh_split(
        config, workdir, split, field_fn, comments=trainer.mesh_provenance(meta), second_order=True
    )
    trainer.finish_generation(record_path, record, objects=records)
    return records


def generate(config, workdir: str) -> Dict:
    """Meshes `config.generate.split` with the run's `config.generate.checkpoint` (ConvONet's generate mode).

    Returns:
      {'meshes': the records, 'checkpoint_step': the step of the checkpoint used}.
    """
    builtin.ensure_dataset(config.data, progress=config.logging.progress)
    model, state, meta = trainer.restore(config, workdir, config.generate.checkpoint)
    records: List[Dict] = generate_meshes(config, workdir, model, {"params": state.params}, meta=meta)
    logger.info(
        "wrote %d meshes to %s (checkpoint step %s), picture %s",
        len(records),
        os.path.join(workdir, "meshes"),
        meta.get("step"),
        os.path.join(workdir, "reconstruction.png"),
    )
    return {"meshes": records, "checkpoint_step": meta.get("step")}


def evaluate(config, workdir: str) -> Dict:
    """ConvONet's eval mode: the metrics of the meshes `generate` wrote, exactly as ONet's."""
    return reconstruction.evaluate_generation(config, workdir, trainer.load_generation(workdir))
