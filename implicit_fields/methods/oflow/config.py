"""Occupancy Flow's defaults, which are also its schema: shapes in motion as a velocity field.

Every key an Occupancy Flow config may set is defined here (shared sections in
`config_utils.common_config`); the trainer rejects any other. The defaults are
the original's 4D point-cloud completion model (`configs/default.yaml` with
`configs/pointcloud/oflow.yaml`): a ResNet-PointNet code of frame 0 (hidden
128, c 128) for the ONet decoder at t = 0, a temporal ResNet-PointNet code of
the 17 frames (hidden 128) for the velocity field (hidden 128), Dopri5 at rtol
1e-3 / atol 1e-5 with the continuous adjoint, L_t0 + L_t, batch 16, Adam 1e-4,
threshold 0.3. The data are the built-in shapes in motion (`data.motion`) in the
D-FAUST layout, which the same loader reads. The correspondence loss
(`pointcloud/oflow_w_correspond.yaml`), the generative model
(`generative/oflow.yaml`) and the sizes that run on a CPU are in
`experiments/configs/oflow.py`.
"""

import ml_collections

from implicit_fields import config_utils, flow, train_utils
from implicit_fields.config_utils import Bool, Choice, Float, Int, Str, Strings


def get_config() -> ml_collections.ConfigDict:
    """The defaults of an Occupancy Flow run (the original's point-cloud model)."""
    config = config_utils.common_config("oflow")
    config.field.threshold = 0.3  # The original's test.threshold.

    config.data = data = ml_collections.ConfigDict()
    # A dataset in the D-FAUST layout: <category>/<sequence>/{points_seq,pcl_seq}/%08d.npz and
    # <category>/{train,val,test}.lst. With `builtin` the built-in shapes in motion are made
    # there first (exact occupancy at every frame, exact correspondences); the original's
    # data/Humans reads as it is (data.builtin=False, data.offset=15).
    data.path = "data/motion_builtin"
    data.builtin = True
    data.builtin_categories = ("chair", "airplane", "lamp")  # Articulated and deformed categories.
    data.builtin_sequences_per_category = 20
    data.builtin_frames = 24  # Frames per sequence (8 windows of 17 at offset 0).
    data.builtin_num_points = 100_000  # Uniform points per frame (points_seq; D-FAUST: 100k).
    data.builtin_num_pcl_points = 100_000  # Corresponding surface points per frame (pcl_seq: 100k).
    data.categories = ()  # Category folders used; () = those of metadata.yaml (or every folder).
    data.length = 17  # Frames per window (length_sequence), at t = i / (length - 1).
    data.offset = 0  # Frames dropped at each sequence's start (offset_sequence; D-FAUST: 15).
    data.points_subsample = 512  # Query points per window at t = 0 and at t (n_training_points).
    data.pcl_points = 100  # Corresponding points per window for L_corr (n_training_pcl_points).
    data.input_points = 300  # Input points per frame (input_pointcloud_n) ...
    data.input_noise = 0.001  # ... with this N(0, s^2) noise (input_pointcloud_noise).
    # Keep the training and validation sequences in memory (float16 points: about 7 bytes a point
    # and frame); False reads frames when a batch needs them (D-FAUST: 42 GB).
    data.cache = True

    config.model = model = ml_collections.ConfigDict()
    model.encoder = "pointnet_resnet"  # Spatial code c_s of frame 0 ('' for the generative model).
    model.encoder_hidden = 128  # encoder_kwargs.hidden_dim (pointcloud/oflow.yaml).
    model.encoder_temporal = "pointnet_resnet"  # Temporal code c_t of the 17 frames ('': none).
    model.encoder_temporal_hidden = 128  # encoder_temporal_kwargs.hidden_dim.
    model.c_dim = 128  # Size of c_s and c_t (pointcloud/oflow.yaml: 128; the class default 512).
    model.decoder = "cbatchnorm"  # The shape at t = 0: ONet's decoder ('cbatchnorm' or 'simple').
    model.decoder_hidden = 256  # ONet's decoder width.
    model.decoder_blocks = 5
    model.velocity_hidden = 128  # velocity_field_kwargs.hidden_size (class default 512).
    model.velocity_blocks = 5  # The generative config: 3.
    # The generative model: z (shape) and z_t (motion) of size z_dim from PointNet posteriors
    # q(z | frame 0) and q(z_t | trajectories), KL to N(0, I) weighted by loss.vae_beta.
    model.z_dim = 0
    model.encoder_latent_hidden = 128
    model.encoder_latent_blocks = 3

    config.ode = ode = ml_collections.ConfigDict()
    ode.rtol = 1e-3  # Dopri5's tolerances (the original's).
    ode.atol = 1e-5
    ode.adjoint = "backsolve"  # 'backsolve' (the continuous adjoint, as the original) or 'checkpoint'.
    ode.max_steps = 4096  # The solver's step budget per solve (an error beyond it).

    config.loss = loss = ml_collections.ConfigDict()
    loss.recon = True  # L_t0 + L_t, BCE means (loss_recon).
    loss.corr = False  # L_corr on data.pcl_points flowed from frame 0 (loss_corr; w_correspond: True).
    loss.vae_beta = 1e-4  # Weight of each KL term (generative model).

    config.train.batch_size = 16
    config.train.num_steps = 200_000
    config.train.eval_every = 2000  # validate_every.
    config.train.checkpoint_every = 200
    config.train.val_windows = 0  # Validation windows (0: the whole val split).
    config.train.val_points = 10_000  # IoU points per frame of validation (n_eval_points).

    config.optim.optimizer = "adam"
    config.optim.learning_rate = 1e-4

    gen = config.generate  # gen.checkpoint: 'best' (highest validation IoU) or 'latest'.
    gen.split = "test"
    gen.max_windows = 0  # Windows meshed (0: the whole split).
    gen.resolution0 = 32  # MISE at t = 0 (the original's generation settings).
    gen.upsampling_steps = 2
    gen.batch_points = 0  # Points per network call (0: the device's default).
    gen.flow_chunk = 16384  # Vertices per ODE solve (padded, so one compiled solve serves all).
    # The ONet-4D-style baseline: MISE at every frame, each query pulled back to t = 0 through
    # the flow, for this many windows (its cost grows with the frames; 0: none).
    gen.baseline_windows = 1
    gen.picture_windows = 3  # Rows of oflow.png (truth, Occupancy Flow, baseline).
    gen.picture_frames = 5  # Frames shown per row (evenly spaced, first and last included).
    gen.gif_size = 192  # Pixels of the animations' frames (one panel).
    gen.gif_ms = 120  # Milliseconds per animation frame.

    config.eval = ev = ml_collections.ConfigDict()
    ev.n_samples = 100_000  # Points sampled on each mesh for Chamfer-L1 (the original: 100k).
    ev.iou_points = 100_000  # IoU points per frame (0: all of the frame's points_seq).
    ev.surface_points = 100_000  # Ground-truth surface points per frame (0: all of pcl_seq).
    ev.undefined_metrics = "original"  # As ONet's: 'original' or 'worst' for undefined values.
    return config


# What each of Occupancy Flow's own keys must be (the shared ones: `config_utils.COMMON_CHECKS`).
CHECKS = {
    "train.compute_dtype": train_utils.Float32Only(
        method="Occupancy Flow",
        reason=(
            "its adaptive Dopri5 solver controls the step size at rtol 1e-3, below bfloat16's "
            "resolution of the velocity field"
        ),
    ),
    "data.path": Str(),
    "data.builtin": Bool(),
    "data.builtin_categories": Strings(),
    "data.builtin_sequences_per_category": Int(1),
    "data.builtin_frames": Int(2),
    "data.builtin_num_points": Int(1),
    "data.builtin_num_pcl_points": Int(1),
    "data.categories": Strings(),
    "data.length": Int(2),
    "data.offset": Int(0),
    "data.points_subsample": Int(1),
    "data.pcl_points": Int(1),
    "data.input_points": Int(1),
    "data.input_noise": Float(0.0),
    "data.cache": Bool(),
    "model.encoder": Choice(("pointnet_resnet", "")),
    "model.encoder_hidden": Int(1),
    "model.encoder_temporal": Choice(("pointnet_resnet", "")),
    "model.encoder_temporal_hidden": Int(1),
    "model.c_dim": Int(0),
    "model.decoder": Choice(("cbatchnorm", "simple")),
    "model.decoder_hidden": Int(1),
    "model.decoder_blocks": Int(1),
    "model.velocity_hidden": Int(1),
    "model.velocity_blocks": Int(1),
    "model.z_dim": Int(0, meaning="0: no latent"),
    "model.encoder_latent_hidden": Int(1),
    "model.encoder_latent_blocks": Int(1),
    "ode.rtol": Float(0.0, min_open=True),
    "ode.atol": Float(0.0, min_open=True),
    "ode.adjoint": Choice(flow.ADJOINTS),
    "ode.max_steps": Int(1),
    "loss.recon": Bool(),
    "loss.corr": Bool(),
    "loss.vae_beta": Float(0.0),
    "train.batch_size": Int(1),
    "train.val_windows": Int(0, meaning="0: the whole val split"),
    "train.val_points": Int(1),
    "generate.split": Choice(("train", "val", "test")),
    "generate.max_windows": Int(0, meaning="0: the whole split"),
    "generate.resolution0": Int(2),
    "generate.upsampling_steps": Int(0),
    "generate.batch_points": Int(0, meaning="0: the device's default"),
    "generate.flow_chunk": Int(1),
    "generate.baseline_windows": Int(0, meaning="0: no baseline"),
    "generate.picture_windows": Int(0),
    "generate.picture_frames": Int(1),
    "generate.gif_size": Int(16),
    "generate.gif_ms": Int(10),
    "eval.n_samples": Int(1),
    "eval.iou_points": Int(0, meaning="0: every point of the frame"),
    "eval.surface_points": Int(0, meaning="0: every point of the frame"),
    "eval.undefined_metrics": Choice(("original", "worst")),
}
