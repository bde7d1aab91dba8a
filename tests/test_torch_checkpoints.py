"""What the checkpoint converters share: reading a state dict from a `.pt` (torch's safe loader,
numpy scalars allowed) or a `.npz`, the `.npz` recipe, and the output folder check.

The `.pt` cases need torch and are skipped without it (PYTHONPATH=<torch's site>).
"""

import datetime
import fractions
import os
import re
import sys
import zipfile

import numpy as np
import pytest

import experiment_configs
from implicit_fields import torch_checkpoints
from implicit_fields.methods.convonet import convert as convonet_convert
from implicit_fields.methods.onet import convert as onet_convert


def _state():
    rng = np.random.default_rng(0)
    return {
        "encoder.fc.weight": rng.normal(size=(3, 2)).astype(np.float32),
        "encoder.fc.bias": rng.normal(size=3).astype(np.float64),
        "decoder.bn.running_var": rng.uniform(0.5, 2, 3).astype(np.float16),
        "decoder.bn.num_batches_tracked": np.array(7, np.int64),
    }


def _assert_same_state(loaded, expected):
    assert sorted(loaded) == sorted(expected)
    for k, v in expected.items():
        assert loaded[k].dtype == v.dtype, k
        np.testing.assert_array_equal(loaded[k], v)


@pytest.mark.parametrize("converter", [onet_convert, convonet_convert], ids=["onet", "convonet"])
def test_the_converters_export_the_shared_names(converter):
    for name in ("ConversionError", "load_state_dict", "check_output", "NPZ_RECIPE"):
        assert getattr(converter, name) is getattr(torch_checkpoints, name), name
        assert name in converter.__all__
    assert issubclass(converter.ConversionError, ValueError)  # The command line's one-line errors.


# --------------------------------------------------------------------------------------
# A .npz of the arrays (no torch).
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["none", "module.", "module. on some names"])
def test_an_npz_of_the_state_dict_loads(tmp_path, prefix):
    state = _state()
    names = {
        k: ("module." + k if prefix == "module." or (prefix != "none" and "encoder" in k) else k)
        for k in state
    }
    path = tmp_path / "state.npz"
    np.savez(path, **{names[k]: v for k, v in state.items()})
    loaded = torch_checkpoints.load_state_dict(path)  # A path object too.
    # nn.DataParallel's prefix goes when every name has it; otherwise the names are kept.
    _assert_same_state(
        loaded, state if prefix != "module. on some names" else {names[k]: v for k, v in state.items()}
    )


def _bad_npz(path, case):
    if case == "object array":
        np.savez(path, **{"decoder.fc_p.weight": np.array([{"a": 1}], dtype=object)})
    elif case == "single array":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif case == "member not an array":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("decoder.fc_p.weight", "text")
    elif case == "truncated":
        np.savez(path, w=np.zeros(1000))
        path.write_bytes(path.read_bytes()[:500])
    elif case == "pickle":
        path.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")  # pickle.dumps({})
    elif case == "no arrays":
        np.savez(path)
    elif case != "missing":
        path.write_bytes({"empty": b"", "junk": b"junk bytes"}[case])


BAD_NPZ = {
    "missing": "file not found",
    "empty": "not a valid .npz file (the file is empty)",
    "junk": "not a valid .npz file (it starts with bytes b'junk', not the zip signature of an .npz)",
    "pickle": "not a valid .npz file (it starts with bytes b'\\x80\\x04",
    "object array": "cannot read 'decoder.fc_p.weight' (it holds Python objects (pickled data), not plain",
    "single array": "not a valid .npz file (it starts with a single .npy array, not the zip signature",
    "member not an array": "'decoder.fc_p.weight' is not an array (a member not in .npy format)",
    "truncated": "not a valid .npz file (BadZipFile: File is not a zip file)",
    "no arrays": "holds no arrays",
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_a_bad_npz_is_named_without_a_pickle_hint(tmp_path, case):
    path = tmp_path / "state.npz"
    _bad_npz(path, case)
    with pytest.raises(torch_checkpoints.ConversionError) as err:
        torch_checkpoints.load_state_dict(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: ") and BAD_NPZ[case] in message, message
    assert "allow_pickle" not in message and "\n" not in message


@pytest.mark.parametrize("name", ["model.pt", "model.pth", "model_best.tar"])
def test_without_torch_a_pt_asks_for_an_npz(tmp_path, monkeypatch, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04 as torch.save writes")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError.
    with pytest.raises(torch_checkpoints.ConversionError) as err:
        torch_checkpoints.load_state_dict(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: reading a PyTorch checkpoint needs torch") and "NPZ_RECIPE" in message


def test_the_readme_gives_the_same_npz_recipe():
    readme = open(os.path.join(experiment_configs.REPO, "README.md"), encoding="utf-8").read()
    lines = [line.strip() for line in torch_checkpoints.NPZ_RECIPE.strip().splitlines()]
    assert "\n".join(lines) in "\n".join(line.strip() for line in readme.splitlines())


# --------------------------------------------------------------------------------------
# A .pt with torch's safe loader.
# --------------------------------------------------------------------------------------


def _numpy1_names(path, legacy):
    """Rewrites a torch file as numpy 1.x pickles it (`numpy.core.multiarray.scalar`)."""
    new, old = b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"
    if legacy:  # One pickle stream: the GLOBAL opcode's names end in newlines, any length.
        raw = open(path, "rb").read()
        assert new in raw
        open(path, "wb").write(raw.replace(new, old))
        return
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):
                assert new in data
                data = data.replace(new, old)
            z.writestr(info, data)


def _original_checkpoint(torch, path, numpy1=False, legacy=False):
    """As the originals' CheckpointIO saves: the model, the optimizer, counters and a numpy float.

    Returns:
      the model's state dict as numpy arrays.
    """
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Conv1d(4, 2, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # Adam's state (step, exp_avg, exp_avg_sq); zero gradients leave the weights.
    checkpoint = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch_it": 3,
        "it": 10,
        "loss_val_best": np.float64(0.5),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    if numpy1:
        _numpy1_names(path, legacy)
    return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("numpy1", [True, False], ids=["numpy1-pickle", "numpy2-pickle"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_an_original_checkpoint_loads_with_the_safe_loader(tmp_path, numpy1, legacy):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "model.pt")
    expected = _original_checkpoint(torch, path, numpy1, legacy)
    if tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 6):
        with pytest.raises(Exception, match="scalar"):  # The problem: torch >= 2.6's default refuses it.
            torch.load(path, map_location="cpu")
    state = torch_checkpoints.load_state_dict(path)
    _assert_same_state(state, expected)
    assert "1.running_mean" in state and state["1.num_batches_tracked"].dtype == np.int64


@pytest.mark.parametrize("layout", ["bare state dict", "DataParallel", "bfloat16"])
def test_other_pt_layouts(tmp_path, layout):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "model.pt")
    state = {k: torch.from_numpy(v) for k, v in _state().items()}
    expected = _state()
    if layout == "DataParallel":
        state = {"module." + k: v for k, v in state.items()}
    elif layout == "bfloat16":  # No numpy dtype: read as float32.
        state["encoder.fc.weight"] = state["encoder.fc.weight"].to(torch.bfloat16)
        expected["encoder.fc.weight"] = state["encoder.fc.weight"].float().numpy()
    torch.save(state if layout == "bare state dict" else {"model": state, "it": 3}, path)
    _assert_same_state(torch_checkpoints.load_state_dict(path), expected)


BAD_PT = {
    "a list": ("expected a state dict (or a dict with 'model'), got list", lambda t: [t.zeros(2)]),
    "no tensors": ("holds no tensors (keys: ['epoch_it', 'it'])", lambda t: {"it": 3, "epoch_it": 1}),
    "not a torch file": ("cannot load with torch", None),
}


@pytest.mark.parametrize("case", list(BAD_PT))
def test_a_pt_without_a_state_dict_is_named(tmp_path, case):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    message, content = BAD_PT[case]
    if content is None:
        path.write_bytes(b"junk bytes, not a torch file")
    else:
        torch.save(content(torch), str(path))
    with pytest.raises(torch_checkpoints.ConversionError, match=re.escape(f"{path}: {message}")):
        torch_checkpoints.load_state_dict(str(path))


@pytest.mark.parametrize("value", ["fraction", "date"])
def test_an_object_the_safe_loader_refuses_is_named(tmp_path, value):
    torch = pytest.importorskip("torch")
    obj = {"fraction": fractions.Fraction(1, 3), "date": datetime.date(2019, 6, 16)}[value]
    path = str(tmp_path / "model.pt")
    torch.save({"model": {"w": torch.zeros(2)}, "extra": obj}, path)
    with pytest.raises(torch_checkpoints.ConversionError) as err:
        torch_checkpoints.load_state_dict(path)
    message = str(err.value)
    assert message.startswith(f"{path}: holds a '{type(obj).__module__}.{type(obj).__name__}' object")
    assert "pickle" not in message and "weights_only" not in message and "\n" not in message
    # The caller's explicit choice.
    assert set(torch_checkpoints.load_state_dict(path, allow_pickle=True)) == {"w"}


@pytest.mark.parametrize("numpy1", [True, False], ids=["numpy1-pickle", "numpy2-pickle"])
def test_the_npz_recipe_reads_an_original_checkpoint(tmp_path, numpy1, monkeypatch):
    torch = pytest.importorskip("torch")
    expected = _original_checkpoint(torch, str(tmp_path / "model.pt"), numpy1)
    monkeypatch.chdir(tmp_path)
    saved = torch.serialization.get_safe_globals()
    try:
        exec(torch_checkpoints.NPZ_RECIPE, {})
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)
    _assert_same_state(torch_checkpoints.load_state_dict(str(tmp_path / "state.npz")), expected)


# --------------------------------------------------------------------------------------
# The output folder.
# --------------------------------------------------------------------------------------


def _output_case(tmp_path, case):
    """(the output path, what the error says) for each kind of used output."""
    if case == "file":
        (tmp_path / "out").write_text("x")
        return tmp_path / "out", "is a file"
    if case == "parent is a file":
        (tmp_path / "f").write_text("x")
        return tmp_path / "f" / "sub" / "run", "f is a file"
    (tmp_path / "out").mkdir()
    if case == "run":
        (tmp_path / "out" / "config.json").write_text("{}")
        (tmp_path / "out" / "best").mkdir()
        return tmp_path / "out", "already holds a run (config.json, best)"
    if case == "many files":
        for i in range(7):
            (tmp_path / "out" / f"{i}.txt").write_text("mine")
        return tmp_path / "out", "already holds 0.txt, 1.txt, 2.txt, 3.txt, 4.txt and 2 more"
    (tmp_path / "out" / ".hidden").write_text("mine")
    return tmp_path / "out", "already holds .hidden"


@pytest.mark.parametrize("case", ["file", "parent is a file", "run", "many files", "a hidden file"])
def test_the_output_must_be_new_or_empty(tmp_path, case):
    path, message = _output_case(tmp_path, case)
    before = sorted((str(p), p.is_file() and p.read_text()) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=re.escape(message)):
        torch_checkpoints.check_output(str(path))
    assert sorted((str(p), p.is_file() and p.read_text()) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", ["empty folder", "new folder", "new nested folder"])
def test_a_new_or_empty_output_is_accepted_and_not_created(tmp_path, case, monkeypatch):
    path = {"empty folder": "empty", "new folder": "run", "new nested folder": "a/b/run"}[case]
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert torch_checkpoints.check_output(path) == str(tmp_path / path)  # Absolute.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
