"""Single-image reconstruction: the ResNet-18 encoder, the `img_choy2016` images of the
built-in data, and the image model training, meshing and evaluating end to end."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import main
from experiments.configs import tiny_img
from implicit_fields import encoders, models, train_utils, vis
from implicit_fields.data import builtin, datasets, multiview, onet_format, pipeline


def test_resnet18_parameter_count_shapes_and_jit(key):
    # torchvision's resnet18 has 11,689,512 parameters with fc 512 -> 1000; ours has fc 512 -> 256.
    enc = encoders.create_encoder("resnet18", c_dim=256, hidden_dim=64)
    shapes = jax.eval_shape(enc.init, key, jnp.zeros((2, 64, 64, 3)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    assert count == 11_689_512 - (512 * 1000 + 1000) + (512 * 256 + 256) == 11_307_840
    assert shapes["params"]["features"]["layer3"]["0"]["downsample"]["0"]["kernel"].shape == (1, 1, 128, 256)
    assert shapes["batch_stats"]["features"]["layer4"]["1"]["bn2"]["var"].shape == (512,)

    small = encoders.Resnet18(c_dim=8, hidden_dim=4)
    images = jax.random.uniform(key, (3, 32, 40, 3))
    variables = small.init(key, images)
    c = small.apply(variables, images)
    assert c.shape == (3, 8) and np.isfinite(np.asarray(c)).all()
    c_jit = jax.jit(lambda v, x: small.apply(v, x))(variables, images)
    np.testing.assert_allclose(c_jit, c, rtol=1e-5, atol=1e-5)


def test_resnet18_batch_norm_train_and_eval(key):
    enc = encoders.Resnet18(c_dim=8, hidden_dim=4)
    images = jax.random.uniform(key, (4, 32, 32, 3))
    variables = enc.init(key, images)
    # Eval: running statistics (init mean 0, var 1), so each image's code is independent of the batch.
    c_eval = enc.apply(variables, images)
    np.testing.assert_allclose(enc.apply(variables, images[:1]), c_eval[:1], rtol=1e-5, atol=1e-5)
    # Train: batch statistics, and running averages updated with momentum 0.1 (PyTorch).
    c_train, updates = enc.apply(variables, images, train=True, mutable=["batch_stats"])
    assert not np.allclose(c_train, c_eval)
    new = updates["batch_stats"]["features"]["bn1"]
    x = (images - jnp.asarray(encoders.IMAGENET_MEAN).reshape(1, 1, 1, 3)) / jnp.asarray(
        encoders.IMAGENET_STD
    ).reshape(1, 1, 1, 3)
    conv = encoders.Conv2d(4, 7, 2, 3)
    feat = conv.apply({"params": variables["params"]["features"]["conv1"]}, x)
    n = feat.size // 4
    np.testing.assert_allclose(new["mean"], 0.1 * feat.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["var"], 0.9 + 0.1 * feat.var((0, 1, 2)) * n / (n - 1), rtol=1e-4)


def test_a_few_steps_lower_the_loss_on_a_tiny_batch(key):
    config = tiny_img.get_config()
    model = models.create_model(config.model)
    state = train_utils.create_train_state(key, model, config)
    rng = np.random.default_rng(0)
    # Images: a dark square whose size says how large the box to predict is.
    images = np.ones((4, 16, 16, 3), np.float32)
    points = rng.uniform(-0.55, 0.55, (4, 256, 3)).astype(np.float32)
    occ = np.zeros((4, 256), np.float32)
    for b in range(4):
        h = 2 + 3 * b
        images[b, 8 - h // 2 : 8 + h // 2 + 1, 8 - h // 2 : 8 + h // 2 + 1] = 0.2
        occ[b] = (np.abs(points[b]) < 0.06 * (b + 1)).all(-1)
    batch = {"points": points, "occupancies": occ, "inputs": images}
    step = jax.jit(train_utils.train_step)
    losses = []
    for _ in range(25):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_images_of_the_builtin_dataset_and_the_reader(tiny_dataset, tmp_path):
    added = builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False)
    assert added == 8  # every object folder with a shape.json (2 categories x 4)
    assert builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False) == 0
    ds = datasets.ShapesDataset(tiny_dataset, "train", images=True)
    folder = os.path.join(ds.model_dir(0), builtin.IMAGES_DIR)
    assert sorted(os.listdir(folder)) == ["000.png", "001.png", "002.png", "cameras.npz", "images.json"]
    data = ds.load(0)
    assert data["images"].shape == (3, 12, 12, 3) and data["images"].dtype == np.uint8
    # White background around the object, the object in the middle, as the renderer draws it.
    assert (data["images"][:, 0, 0] == 255).all() and data["images"].min() < 200
    shape = multiview.load_shape(ds.model_dir(0))
    from implicit_fields import cameras as cam_lib

    cams = cam_lib.load_cameras(os.path.join(folder, "cameras.npz"))
    view = multiview.render_view(shape, {k: v[1] for k, v in cams.items()}, 12, 12)
    assert view["mask"].any()  # cameras.npz holds the cameras the views were rendered with
    np.testing.assert_array_equal(view["mask"], (data["images"][1] != 255).any(-1))
    np.testing.assert_array_equal(vis.read_png(os.path.join(folder, "001.png")), data["images"][1])
    # Deterministic per object: re-rendering gives the same bytes.
    before = open(os.path.join(folder, "002.png"), "rb").read()
    builtin.add_images(tiny_dataset, n_views=3, resolution=14, num_workers=1, progress=False)
    builtin.add_images(tiny_dataset, n_views=3, resolution=12, num_workers=1, progress=False)
    assert open(os.path.join(folder, "002.png"), "rb").read() == before
    # Resized on loading (the original's Resize(224)).
    resized = datasets.ShapesDataset(tiny_dataset, "train", images=True, img_size=20, cache=False).load(0)
    assert resized["images"].shape == (3, 20, 20, 3)
    # Training draws a random view per sample, evaluation view 0.
    seen = {
        int(np.argmin([np.abs(datasets.object_inputs(data, np.random.default_rng(s), 0, 0.0, "img")
                              - data["images"][v] / 255.0).max() for v in range(3)]))
        for s in range(20)
    }
    assert seen == {0, 1, 2}
    view0 = data["images"][0] / np.float32(255)
    np.testing.assert_array_equal(datasets.eval_inputs(data, 5, 0, 0.0, 0, "img"), view0)
    batch = pipeline.make_train_batch(ds, 3, 4, 0, 16, 0, 0.0, 0.0, input_type="img")
    again = pipeline.make_train_batch(ds, 3, 4, 0, 16, 0, 0.0, 0.0, input_type="img")
    assert batch["inputs"].shape == (4, 12, 12, 3)
    np.testing.assert_array_equal(batch["inputs"], again["inputs"])  # a function of (seed, step)


def test_image_reader_errors_name_the_file(tmp_path, monkeypatch):
    folder = tmp_path / "img_choy2016"
    with pytest.raises(onet_format.DataFormatError, match="image folder not found"):
        datasets.load_images(str(folder))
    folder.mkdir()
    with pytest.raises(onet_format.DataFormatError, match="no images"):
        datasets.load_images(str(folder))
    vis.write_png(str(folder / "000.png"), np.full((5, 5, 3), 200, np.uint8))
    assert datasets.load_images(str(folder)).shape == (1, 5, 5, 3)
    (folder / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    import builtins

    real_import = builtins.__import__

    def no_pillow(name, *args, **kwargs):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no Pillow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pillow)
    with pytest.raises(onet_format.DataFormatError, match=r"001\.jpg.*Pillow"):
        datasets.load_images(str(folder))


def test_jpeg_views_as_in_the_original_layout_are_read(tmp_path):
    """The original's img_choy2016 holds 000.jpg ...: a JPEG round trip, grey-scale too, and a broken file."""
    Image = pytest.importorskip("PIL.Image")
    folder = tmp_path / "img_choy2016"
    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    view = np.stack([8 * xx, 8 * yy, np.full_like(xx, 128)], -1).astype(np.uint8)  # smooth: JPEG keeps it
    Image.fromarray(view).save(folder / "000.jpg", quality=95)
    grey = (rng.uniform(0, 1) * 255 * np.ones((32, 32))).astype(np.uint8)
    Image.fromarray(grey, mode="L").save(folder / "001.jpg", quality=95)
    images = datasets.load_images(str(folder))
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert np.abs(images[0].astype(float) - view).mean() < 3.0
    np.testing.assert_allclose(images[1], np.repeat(grey[..., None], 3, -1), atol=2)  # L -> RGB
    (folder / "002.jpg").write_bytes((folder / "000.jpg").read_bytes()[:200])  # truncated
    with pytest.raises(onet_format.DataFormatError, match=r"002\.jpg"):
        datasets.load_images(str(folder))


def test_resize_image_keeps_constants_and_averages_when_shrinking():
    const = np.full((7, 9, 3), 0.25, np.float32)
    np.testing.assert_allclose(datasets.resize_image(const, 5), 0.25, atol=1e-6)
    checker = (np.indices((8, 8)).sum(0) % 2).astype(np.float32)[..., None]
    np.testing.assert_allclose(datasets.resize_image(checker, 4), 0.5, atol=0.13)
    assert datasets.resize_image(checker, 16).shape == (16, 16, 1)


def test_image_model_trains_meshes_and_evaluates(tiny_dataset, tmp_path):
    config = tiny_img.get_config()
    config.data.path = tiny_dataset
    config.data.img_n_views = 3
    config.data.builtin_img_resolution = 12
    config.data.img_size = 16  # resized on loading
    config.generate.method = "dense"  # MISE is tested on its own; one grid compiles faster here
    workdir = str(tmp_path / "run")
    result = main.run(config, workdir, "all")
    assert 0.0 <= result["iou"] <= 1.0 and np.isfinite(result["chamfer_l1"])
    records = json.load(open(os.path.join(workdir, "meshes", "generation.json")))
    assert len(records) == 2
    saved = np.load(os.path.join(workdir, records[0]["mesh"].replace(".ply", "_inputs.npz")))
    assert saved["inputs"].shape == (16, 16, 3)
    image = vis.read_png(os.path.join(workdir, "reconstruction.png"))
    assert image.std() > 5


@pytest.mark.parametrize(
    "kernel_size, stride, padding, size",
    [(7, 2, 3, (13, 10)), (3, 1, 1, (7, 6)), (3, 2, 1, (9, 8)), (3, 2, 1, (4, 5)), (1, 2, 0, (7, 6))],
)
def test_conv2d_im2col_matches_xla_values_and_gradients(kernel_size, stride, padding, size):
    # ResNet-18's convolutions: the 7x7/2 stem, 3x3/1 and 3x3/2 blocks, 1x1/2 shortcuts; odd sizes too.
    rng = np.random.default_rng(kernel_size + 10 * stride + size[0])  # numpy: no per-shape RNG compiles
    x = rng.normal(size=(2, *size, 3)).astype(np.float32)
    kernel = rng.normal(size=(kernel_size, kernel_size, 3, 5)).astype(np.float32)
    expected = tuple((n + 2 * padding - kernel_size) // stride + 1 for n in size)
    cotangent = rng.normal(size=(2, *expected, 5)).astype(np.float32)

    @jax.jit
    def values_and_grads(x, kernel):
        out = {}
        for impl in ("xla", "im2col"):
            y, vjp = jax.vjp(lambda x, w, impl=impl: encoders.conv2d(x, w, stride, padding, impl), x, kernel)
            out[impl] = (y, *vjp(cotangent))
        return out

    out = values_and_grads(x, kernel)
    assert out["im2col"][0].shape == out["xla"][0].shape == (2, *expected, 5)
    for a, b in zip(out["im2col"], out["xla"]):  # y, d/dx, d/dkernel
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown Conv2d impl"):
        encoders.conv2d(x, kernel, stride, padding, impl="fft")


def test_conv2d_auto_picks_im2col_for_small_outputs_and_1x1_on_cpu():
    assert jax.default_backend() == "cpu"
    pick = encoders._auto_conv2d_impl
    assert pick((8, 64, 64, 3), (7, 7, 3, 64), 2, 3) == "xla"  # stem: 32 x 32 output
    assert pick((8, 16, 16, 64), (3, 3, 64, 64), 1, 1) == "xla"
    assert pick((8, 4, 4, 256), (3, 3, 256, 256), 1, 1) == "im2col"  # 16 pixels
    assert pick((8, 2, 2, 512), (3, 3, 512, 512), 1, 1) == "im2col"
    assert pick((8, 56, 56, 64), (1, 1, 64, 128), 2, 0) == "im2col"  # 1x1: a matmul


def test_resnet18_is_the_same_with_either_conv_impl(key):
    # 'auto' on CPU mixes the two per layer; forcing each gives the same codes (gradients: per conv above).
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 19, 17, 3)).astype(np.float32)
    # Random variables from numpy: an eager `init` compiles one RNG program per shape (~10 s here).
    shapes = jax.eval_shape(encoders.Resnet18(c_dim=6, hidden_dim=4).init, key, images)
    variables = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(np.float32), shapes)
    codes = jax.jit(
        lambda v: {impl: encoders.Resnet18(c_dim=6, hidden_dim=4, conv_impl=impl).apply(v, images)
                   for impl in ("xla", "im2col")}
    )(variables)
    np.testing.assert_allclose(codes["im2col"], codes["xla"], rtol=1e-5, atol=1e-5)
