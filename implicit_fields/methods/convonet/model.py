"""The Convolutional Occupancy Network (Peng et al., ECCV 2020): local features, convolved, decoded per point.

`ConvolutionalOccupancyNetwork` is the original's `ConvolutionalOccupancyNetwork`
(`src/conv_onet/models/__init__.py`): the point cloud is encoded by
`encoders.LocalPoolPointnet` into feature planes (xz, xy, yz) and/or a 3D grid,
each processed by a U-Net (`unet.UNet2D`, one instance shared by the planes;
`unet.UNet3D` for the grid), and `decoders.LocalDecoder` reads the features at
every query point. Its parts are `encode(inputs) -> c` (a dict of feature
planes / grids) and `decode(points, c) -> logits`, so a mesh encodes an object
once and MISE only decodes (`generation.py`).

Parameter names follow the original's state dict: `encoder/{fc_pos, blocks_i,
fc_c, unet, unet3d}` and `decoder/{fc_p, fc_c_i, blocks_i, fc_out}`.
"""

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from implicit_fields import decoders, encoders, local_features, unet

FeatureDict = Dict[str, jnp.ndarray]


class ConvolutionalOccupancyNetwork(nn.Module):
    """f(p, x) -> occupancy logit through local feature planes / grids of x.

    Attributes:
      c_dim: channels of the features (original: 32).
      encoder_hidden: width of the local-pool PointNet (original: 32).
      plane_type: the feature planes / grid: some of 'xz', 'xy', 'yz', 'grid'.
      plane_resolution: cells per side of a plane (original: 64 objects, 128 rooms).
      grid_resolution: cells per side of the grid (original: 32 objects, 64 rooms).
      padding: the padding of the unit cube (original: 0.1).
      encoder_blocks: ResNet blocks of the encoder (original: 5).
      scatter_type: the encoder's local pool, 'max' (original) or 'mean'.
      unet: a 2D U-Net on each plane (original: on).
      unet_depth, unet_start_filts: its levels and first width (original: 4 / 5 rooms, 32).
      unet3d: a 3D U-Net on the grid (original: on).
      unet3d_levels, unet3d_f_maps: its levels and first width (original: 3 / 4 rooms, 32).
      decoder_hidden: width of the decoder (original: 32).
      decoder_blocks: ResNet blocks of the decoder (original: 5).
      unet3d_layer_order: 'gcr' (GroupNorm, conv, ReLU: the original) or 'cr'
        (no normalisation, so that every feature is a function of a bounded
        neighbourhood, which makes sliding-window decoding exact).
      local_coord: the crop models' lattice (the original's `local_coord`,
        grid only): the grid's voxels tile the padded cube, the networks read
        a point's position inside its voxel, and features are sampled at
        voxel centres, so that the model is equivariant to whole-voxel shifts
        and a larger scene can be decoded crop by crop (`sliding_window.py`).
      voxel: the lattice's voxel side; 0 means the training cube's, (1 +
        padding) / grid_resolution (a crop model is a clone with another
        grid_resolution and this voxel).
    """

    c_dim: int = 32
    encoder_hidden: int = 32
    plane_type: Tuple[str, ...] = ("xz", "xy", "yz")
    plane_resolution: int = 64
    grid_resolution: int = 32
    padding: float = 0.1
    encoder_blocks: int = 5
    scatter_type: str = "max"
    unet: bool = True
    unet_depth: int = 4
    unet_start_filts: int = 32
    unet3d: bool = True
    unet3d_levels: int = 3
    unet3d_f_maps: int = 32
    decoder_hidden: int = 32
    decoder_blocks: int = 5
    unet3d_layer_order: str = "gcr"
    local_coord: bool = False
    voxel: float = 0.0

    # No latent: the trainer's shared code asks every occupancy model for its z_dim.
    z_dim = 0

    def setup(self):
        types = tuple(self.plane_type)
        planes = any(t != "grid" for t in types)
        grid = "grid" in types
        if self.local_coord and (types != ("grid",) or (self.voxel <= 0 and self.grid_resolution % 2)):
            raise ValueError(
                f"local_coord needs the grid alone with an even resolution, got plane_type {list(types)} "
                f"and grid_resolution {self.grid_resolution}"
            )
        unit = self.voxel_size if self.local_coord else 0.0
        self.encoder = encoders.LocalPoolPointnet(
            c_dim=self.c_dim,
            hidden_dim=self.encoder_hidden,
            plane_type=types,
            plane_resolution=self.plane_resolution if planes else None,
            grid_resolution=self.grid_resolution if grid else None,
            padding=self.padding,
            n_blocks=self.encoder_blocks,
            scatter_type=self.scatter_type,
            unet=(
                unet.UNet2D(out_channels=self.c_dim, start_filts=self.unet_start_filts, depth=self.unet_depth)
                if planes and self.unet
                else None
            ),
            unet3d=(
                unet.UNet3D(
                    out_channels=self.c_dim,
                    f_maps=self.unet3d_f_maps,
                    num_levels=self.unet3d_levels,
                    layer_order=self.unet3d_layer_order,
                )
                if grid and self.unet3d
                else None
            ),
            unit_size=unit,
        )
        self.decoder = decoders.LocalDecoder(
            hidden_size=self.decoder_hidden,
            n_blocks=self.decoder_blocks,
            padding=self.padding,
            unit_size=unit,
        )

    @property
    def voxel_size(self) -> float:
        """The side of a grid voxel: `voxel`, or the padded cube (1 + padding) over grid_resolution."""
        return self.voxel if self.voxel > 0 else (1.0 + self.padding) / self.grid_resolution

    @property
    def grid_origin(self) -> float:
        """The corner of the padded cube, -(1 + padding) / 2: a lattice point (the resolution is even)."""
        return -(1.0 + self.padding) / 2

    def encode(self, inputs, train: bool = False) -> FeatureDict:
        """Point cloud [batch, n, 3] -> {'xz'|'xy'|'yz': [batch, R, R, c], 'grid': [batch, R, R, R, c]}."""
        if self.local_coord:
            r = self.grid_resolution
            cells = local_features.lattice_cells(inputs, self.grid_origin, self.voxel_size, r)
            return self.encode_cells(inputs, cells, train=train)
        return self.encoder(inputs, train=train)

    def decode(self, points, c: FeatureDict, z=None, train: bool = False):
        """Logits [batch, T] of points [batch, T, 3] given the features `c` of `encode`."""
        if self.local_coord:
            r = self.grid_resolution
            coords = local_features.lattice_coords(points, self.grid_origin, self.voxel_size, r)
            return self.decode_coords(points, c, coords, train=train)
        return self.decoder(points, c, z, train=train)

    def encode_cells(self, inputs, cells, train: bool = False) -> FeatureDict:
        """The grid of a crop: points [batch, n, 3] with their lattice cells int [batch, n] (-1: left out).

        The grid has `grid_resolution` voxels per side, whatever box the
        cells index (a crop of a larger scene).
        """
        return self.encoder(inputs, train=train, cells={"grid": cells})

    def decode_coords(self, points, c: FeatureDict, coords, train: bool = False):
        """Logits [batch, T] of points [batch, T, 3] read at grid coordinates [batch, T, 3] of a crop."""
        return self.decoder(points, c, None, train=train, coords={"grid": coords})

    def __call__(self, points, inputs, train: bool = False):
        """Logits [batch, T] of points [batch, T, 3] given the point cloud [batch, n, 3]."""
        return self.decode(points, self.encode(inputs, train=train), train=train)


def create_model(model_config, padding: float = 0.1) -> ConvolutionalOccupancyNetwork:
    """The network of `config.model` in the cube of side 1 + `padding` (`config.field.padding`)."""
    return ConvolutionalOccupancyNetwork(
        c_dim=model_config.c_dim,
        encoder_hidden=model_config.encoder_hidden,
        plane_type=tuple(model_config.plane_type),
        plane_resolution=model_config.plane_resolution,
        grid_resolution=model_config.grid_resolution,
        padding=padding,
        encoder_blocks=model_config.encoder_blocks,
        scatter_type=model_config.scatter_type,
        unet=model_config.unet,
        unet_depth=model_config.unet_depth,
        unet_start_filts=model_config.unet_start_filts,
        unet3d=model_config.unet3d,
        unet3d_levels=model_config.unet3d_levels,
        unet3d_f_maps=model_config.unet3d_f_maps,
        decoder_hidden=model_config.decoder_hidden,
        decoder_blocks=model_config.decoder_blocks,
        unet3d_layer_order=model_config.unet3d_layer_order,
        local_coord=model_config.local_coord,
    )


def feature_types(plane_type: Sequence[str]) -> Tuple[str, ...]:
    """The feature types of a config in the original's order ('xz', 'xy', 'yz', 'grid')."""
    return tuple(t for t in ("xz", "xy", "yz", "grid") if t in tuple(plane_type))
