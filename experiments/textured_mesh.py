"""Textured meshes from one image: an occupancy network's shape, coloured by a texture field.

  python -m experiments.main --config experiments/configs/texture_fields.py:cpu --workdir runs/texture_fields
  python -m experiments.main --config experiments/configs/onet.py:img_textured,cpu \
      --workdir runs/onet_textured --mode train
  python -m experiments.textured_mesh --shape_workdir runs/onet_textured --texture_workdir runs/texture_fields

For each of the first --num objects of --split of the texture run's dataset,
the first condition image goes to the image-conditioned Occupancy Network of
--shape_workdir (meshed with its MISE settings) and to the texture field of
--texture_workdir, which colours the mesh's vertices. Writes
--out/<category>_<object>.ply (coloured PLY), --out/textured_meshes.png (the
input, then the truth and the coloured mesh from held-out circle views) and
--out/textured_meshes.json (per object SSIM, PSNR and L1 of those renderings,
which measure shape and texture together, and the seconds of each half).
--out defaults to TEXTURE_WORKDIR/textured_meshes.

This file only parses flags and joins the two methods' public functions; the
work is done by the library (`implicit_fields.methods.texture_fields.generation.
textured_meshes`, `implicit_fields.methods.onet.generation.create_field_fns`,
`implicit_fields.data.reconstruction.extract`).
"""

import logging
import os

from absl import app, flags

from experiments import cli

_SHAPE = flags.DEFINE_string("shape_workdir", None, "An image-conditioned ONet run (onet.py:img_textured).")
_TEXTURE = flags.DEFINE_string("texture_workdir", None, "A trained Texture Fields run.")
_SPLIT = flags.DEFINE_enum("split", "test", ["train", "val", "test"], "Split of the objects.")
_NUM = flags.DEFINE_integer("num", 4, "Objects to make textured meshes of.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: TEXTURE_WORKDIR/textured_meshes).")
flags.mark_flags_as_required(["shape_workdir", "texture_workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.getLogger("absl").addFilter(lambda r: r.levelno >= logging.WARNING or "/orbax/" not in r.pathname)
    import jax.numpy as jnp

    from implicit_fields import trainer
    from implicit_fields.data import reconstruction, textured
    from implicit_fields.methods.onet import generation as onet_generation
    from implicit_fields.methods.texture_fields import generation

    if _NUM.value < 1:
        raise ValueError(f"--num={_NUM.value}: must be >= 1")
    shape_dir = trainer.check_workdir(_SHAPE.value, create=False)
    texture_dir = trainer.check_workdir(_TEXTURE.value, create=False)
    shape_config = trainer.load_run_config(shape_dir)
    texture_config = trainer.load_run_config(texture_dir)
    if shape_config.method != "onet" or shape_config.data.input_type != "img":
        raise ValueError(f"--shape_workdir={shape_dir}: is not an image-conditioned ONet run")
    if texture_config.method != "texture_fields":
        raise ValueError(f"--texture_workdir={texture_dir}: is a {texture_config.method!r} run")
    if shape_config.model.encoder != "resnet18":
        raise ValueError(f"--shape_workdir={shape_dir}: needs the global image model (onet.py:img_textured)")
    shape_model, shape_state, _ = trainer.restore(shape_config, shape_dir, shape_config.generate.checkpoint)
    variables = {"params": shape_state.params, "batch_stats": shape_state.batch_stats}
    encode, decode = onet_generation.create_field_fns(shape_model, variables)
    img_size = shape_config.data.img_size

    def mesh_fn(obj):
        # The condition view as the shape model takes it (nearest resize if the sizes differ).
        image = textured.resize_nearest(obj["input_images"][0], img_size)
        c = encode(jnp.asarray(image, jnp.float32))
        vertices, faces, _ = reconstruction.extract(shape_config, lambda p: decode(c, p))
        return vertices, faces

    out = _OUT.value or os.path.join(texture_dir, "textured_meshes")
    record = generation.textured_meshes(texture_config, texture_dir, mesh_fn, out, _NUM.value, _SPLIT.value)
    print(
        f"{len(record['objects'])} textured meshes: held-out views SSIM {record['ssim']:.3f}, "
        f"PSNR {record['psnr']:.2f}, L1 {record['l1']:.4f} -> {out}/*.ply, {record['picture']}"
    )


if __name__ == "__main__":
    cli.run_absl(main)
