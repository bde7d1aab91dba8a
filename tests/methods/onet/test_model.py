"""ONet's model: the eval-mode field of one object is pointwise (the VAE's terms: test_task.py)."""

import jax
import numpy as np

from implicit_fields.methods.onet import model as models


def test_eval_mode_decoder_is_pointwise_so_chunking_does_not_matter(key):
    model = models.OccupancyNetwork(c_dim=16, encoder_hidden=16, decoder_hidden=16, decoder_blocks=2)
    pts = jax.random.uniform(key, (2, 30, 3), minval=-0.5, maxval=0.5)
    inputs = jax.random.normal(jax.random.key(3), (2, 20, 3)) * 0.3
    variables = model.init(key, pts, inputs)
    # Take one training step's statistics so the running stats are not trivial.
    _, upd = model.apply(variables, pts, inputs, train=True, mutable=["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": upd["batch_stats"]}
    full = model.apply(variables, pts, inputs)
    c = model.apply(variables, inputs, method=models.OccupancyNetwork.encode)
    fn = jax.jit(models.make_logit_fn(model, variables, c[1], chunk_size=7))
    np.testing.assert_allclose(fn(pts[1]), full[1], rtol=1e-5, atol=1e-5)
