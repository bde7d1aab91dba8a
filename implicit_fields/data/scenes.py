"""Per-scene multi-view data: the built-in scene on demand, in either layout, and its splits.

The methods that fit one scene from posed images (DVR, NeRF) read a folder in DVR's
multi-view layout (`data.multiview`) or NeRF's Blender layout (`data.blender`). With
`builtin`, a missing folder is rendered from a built-in object (exact renders, masks,
cameras and the exact shape in `shape.json` for evaluation); an existing one is
checked against the settings asked for and never rendered over.
"""

import json
import os

from implicit_fields import summary
from implicit_fields.data import blender, builtin, multiview, shapes

__all__ = ["ensure_scene", "load_split"]


def _settings(data_config):
    return {
        "builtin_category": shapes.category_synset(data_config.builtin_category),
        "builtin_index": int(data_config.builtin_index),
        "builtin_seed": int(data_config.builtin_seed),
        "n_views": int(data_config.n_views),
        "resolution": int(data_config.resolution),
        "texture": data_config.texture,
        "material": data_config.get("material", "diffuse"),
    }


def _builtin_shape(data_config):
    return builtin.generate_object(
        data_config.builtin_category,
        data_config.builtin_index,
        seed=data_config.builtin_seed,
        num_points=1,
        num_surface_points=1,
    )["shape"]


def ensure_scene(data_config, progress: bool = True) -> str:
    """Returns the scene folder `data_config.path`, rendering the built-in object there if missing.

    Args:
      data_config: the `data` section of a DVR or NeRF config (path, builtin,
        builtin_category, builtin_index, builtin_seed, n_views, resolution, texture and,
        when present, material, layout and val_views).
      progress: a progress bar over the rendered views.

    Raises:
      NotADirectoryError / FileNotFoundError: naming `config.data.path`.
      ValueError: the folder holds a built-in scene rendered with other settings.
    """
    folder = os.path.abspath(data_config.path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"config.data.path={data_config.path!r}: is a file, not a scene folder")
    layout = data_config.get("layout", "multiview")
    if os.path.isdir(folder):
        try:
            found = blender.detect_layout(folder)
        except ValueError:
            found = None
        if found is not None and data_config.builtin and found != layout:
            raise ValueError(
                f"config.data.path={data_config.path!r}: holds a scene in the {found} layout, but "
                f"config.data.layout={layout!r}; use another path or layout"
            )
        complete = os.path.exists(os.path.join(folder, multiview.INFO_FILE))  # Written last.
        if found == "multiview" and data_config.builtin and complete:
            _check_rendered_scene(data_config, folder)
            return folder
        if found is not None and not data_config.builtin:
            return folder
    if not data_config.builtin:
        raise FileNotFoundError(
            f"config.data.path={data_config.path!r}: no scene there (neither the multi-view layout's "
            f"cameras.npz nor the Blender layout's transforms_train.json); config.data.builtin=True "
            f"renders the built-in object there"
        )
    kwargs = {}
    if data_config.get("material", "diffuse") != "diffuse":
        kwargs["material"] = data_config.material
    if layout == "blender":
        # Keeps a complete scene written with the same settings; refuses one with others.
        blender.write_builtin_scene(
            folder,
            category=data_config.builtin_category,
            index=int(data_config.builtin_index),
            seed=int(data_config.builtin_seed),
            n_views=int(data_config.n_views),
            resolution=int(data_config.resolution),
            texture=data_config.texture,
            val_views=int(data_config.get("val_views", 4)),
            progress=progress,
            **kwargs,
        )
        return folder
    shape = _builtin_shape(data_config)
    info = {
        "category": data_config.builtin_category,
        "index": int(data_config.builtin_index),
        "seed": int(data_config.builtin_seed),
    }
    os.makedirs(folder, exist_ok=True)
    summary.write_json(os.path.join(folder, "shape.json"), shape.to_dict(), indent=None)
    multiview.write_multiview(
        shape,
        folder,
        n_views=data_config.n_views,
        resolution=data_config.resolution,
        seed=[int(data_config.builtin_seed), int(data_config.builtin_index)],
        progress=progress,
        texture=data_config.texture,
        info=info,
        **kwargs,
    )
    return folder


def _check_rendered_scene(data_config, folder: str) -> None:
    """Refuses a built-in multi-view scene rendered with other settings than `data_config` asks for.

    The message lists each differing key, the rendered value and the asked one.
    """
    info_path = os.path.join(folder, multiview.INFO_FILE)
    if not os.path.exists(info_path):
        return
    try:
        with open(info_path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{info_path}: unreadable scene record ({e})") from None
    info, params = stored.get("info") or {}, stored.get("params") or {}
    if not info:
        return  # Not a built-in scene (rendered by other means): nothing to compare.
    category = info.get("category")
    rendered = {
        "builtin_category": shapes.category_synset(category) if category else None,
        "builtin_index": info.get("index"),
        "builtin_seed": info.get("seed"),
        "n_views": params.get("n_views"),
        "resolution": (params.get("resolution") or [None])[0],
        "texture": params.get("texture"),
        "material": params.get("material", "diffuse"),
    }
    asked = _settings(data_config)
    differ = [
        f"config.data.{k}: rendered {rendered[k]!r}, asked {asked[k]!r}"
        for k in asked
        if rendered[k] != asked[k]
    ]
    if differ:
        raise ValueError(
            f"{folder}: the built-in scene there was rendered with other settings ({'; '.join(differ)}); "
            f"use another config.data.path (or move that folder away to render it again)"
        )


def load_split(data_config, folder: str, split: str):
    """The views of one split ('train', 'val' or 'test') of the scene in `folder`.

    Blender layout: the split's transforms file (scaled by `data.scale`); multi-view
    layout: the last `data.val_views` views are 'val' and 'test', the others 'train'.
    """
    return blender.load_views(
        folder, split, val_views=int(data_config.val_views), scale=float(data_config.get("scale", 1.0))
    )
