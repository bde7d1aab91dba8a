"""Texture Fields' evaluation: SSIM, PSNR, L1 (and FID, Feature-L1 with user-given weights).

As the original (`evaluate.py` -> `mesh2tex/eval.py`), the metrics compare the
two folders of PNGs that generation wrote (`renderings/fake`, `renderings/real`),
image by image, then average over images:

* SSIM: skimage's (7 x 7 uniform window, per channel, averaged), with
  `eval.ssim_data_range` (1.0: images in [0, 1]); the value with the other data
  range (the original's old skimage used 2.0, the float dtype's range -1..1,
  which gives higher SSIM) is stored beside it as `ssim_data_range_<r>`;
* PSNR (data range 1) and the pixel L1 (the mean absolute difference);
* FID and Feature-L1 over torchvision's ImageNet Inception-v3 (the original's
  network) only when `eval.inception_weights` names a weights file. Without it
  they are `null` in `metrics.json` with a note saying why: no number is given
  that looks comparable and is not.

Writes `WORKDIR/metrics.json` and returns its content.
"""

import logging
import os
from typing import Any, Dict

import numpy as np

from implicit_fields import image_metrics, summary, trainer, vis
from implicit_fields.methods.texture_fields import generation

logger = logging.getLogger(__name__)


def _read(workdir, rel):
    path = os.path.join(workdir, rel)
    if not os.path.exists(path):
        raise ValueError(f"{path}: missing; rerun --mode generate")
    return vis.read_png(path).astype(np.float64) / 255.0


def evaluate(config, workdir: str) -> Dict[str, Any]:
    """The metrics of the finished generation in `workdir` (`metrics.json`)."""
    record_path = os.path.join(workdir, generation.RENDER_DIR, "generation.json")
    record = trainer.read_generation(record_path)
    pairs = record.get("images") or []
    if not pairs:
        raise ValueError(f"{record_path}: lists no images; rerun --mode generate")
    r = float(config.eval.ssim_data_range)
    other = 2.0 if r != 2.0 else 1.0
    ssim, ssim_other, psnr, l1 = [], [], [], []
    fakes, reals = [], []
    for p in pairs:
        fake, real = _read(workdir, p["fake"]), _read(workdir, p["real"])
        ssim.append(image_metrics.ssim(fake, real, data_range=r))
        ssim_other.append(image_metrics.ssim(fake, real, data_range=other))
        psnr.append(image_metrics.psnr(fake, real))
        l1.append(image_metrics.l1(fake, real))
        fakes.append(fake)
        reals.append(real)
    finite_psnr = [x for x in psnr if np.isfinite(x)]
    metrics: Dict[str, Any] = {
        "ssim": float(np.mean(ssim)),
        "ssim_data_range": r,
        f"ssim_data_range_{other:g}": float(np.mean(ssim_other)),
        "psnr": float(np.mean(finite_psnr)) if finite_psnr else None,
        "l1": float(np.mean(l1)),
        "num_images": len(pairs),
        "num_objects": record.get("num_objects"),
        "split": record.get("split"),
        "views": record.get("views"),
        "img_size": record.get("img_size"),
        "checkpoint": record.get("checkpoint"),
        "checkpoint_step": record.get("checkpoint_step"),
    }
    weights = config.eval.inception_weights or None
    fid = image_metrics.fid_and_feature_l1(np.stack(fakes), np.stack(reals), weights)
    metrics.update(fid=fid["fid"], feature_l1=fid["feature_l1"], fid_note=fid["note"])
    summary.write_json(os.path.join(workdir, "metrics.json"), metrics)
    shown = ", ".join(
        f"{k} {metrics[k]:.4f}"
        for k in ("ssim", "psnr", "l1", "fid", "feature_l1")
        if metrics.get(k) is not None
    )
    logger.info("%d images of %s objects: %s", len(pairs), metrics["num_objects"], shown)
    return metrics
