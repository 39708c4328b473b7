"""Property: whatever happens to a zoo's files (truncation, flipped bytes, garbage, deletion),
importing either succeeds or raises one of this library's errors naming the problem; no raw
exception from inside torch, numpy, csv, gzip or safetensors reaches the user."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probegen_jax.errors import ProbegenError
from probegen_jax.zoo.formats import import_zoo

torch = pytest.importorskip("torch")


def _dwsnets(root):
    from test_formats_dwsnets import small_siren_zoo

    from probegen_jax.zoo.formats import export_zoo

    export_zoo("dwsnets", small_siren_zoo(), root, progress=False)
    return {}


def _small_cnn_zoo(root):
    from test_formats_small_cnn_zoo import cnn_zoo

    from probegen_jax.zoo.formats import export_zoo

    export_zoo("small-cnn-zoo", cnn_zoo(n=4), root, progress=False)
    return {"split_file": root / "split.csv"}


def _wild_park(root):
    from test_formats_wild_park import make_park

    make_park(root, checkpoints=1)
    return {}


def _model_zoos(root):
    from test_formats_model_zoos import make_zoo

    make_zoo(root, models=(("CNN", 1, "relu"),), epochs=1)
    return {}


def _model_j(root):
    from test_formats_model_j import LAYER, make_tree

    make_tree(root, "ResNet", n_per_split=(2, 1, 1))
    return {"layers": [LAYER]}


MAKERS = {"dwsnets": _dwsnets, "wild-park": _wild_park, "model-zoos": _model_zoos, "model-j": _model_j}
try:
    import probegen_jax.archs.cnn  # noqa: F401  (the small_cnn architecture)

    MAKERS["small-cnn-zoo"] = _small_cnn_zoo
except ImportError:
    pass


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    made = {}
    for fmt, make in MAKERS.items():
        root = tmp_path_factory.mktemp(fmt.replace("-", "_"))
        made[fmt] = (root, make(root))
    return made


def corrupt(path, kind, position, value):
    data = path.read_bytes()
    at = int(position * len(data))
    if kind == "truncate":
        path.write_bytes(data[:at])
    elif kind == "flip":
        data = bytearray(data)
        for k in range(8):
            if data:
                data[(at + 97 * k) % len(data)] ^= value
        path.write_bytes(bytes(data))
    elif kind == "garbage":
        path.write_bytes(bytes([value]) * (at % 64 + 1))
    elif kind == "delete":
        path.unlink()
    elif kind == "json" and path.suffix == ".json" and path.name != "result.json":  # result.json: JSON lines
        doc = json.loads(data)
        key = sorted(doc)[at % len(doc)] if isinstance(doc, dict) and doc else None
        if key is not None:
            doc[key] = {"path": ["missing/file.pth"], "label": [value], "score": [0.5], "step": [1]}
        path.write_text(json.dumps(doc))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(MAKERS)), pick=st.floats(0, 1, exclude_max=True),
       kind=st.sampled_from(["truncate", "flip", "garbage", "delete", "json"]),
       position=st.floats(0, 1, exclude_max=True), value=st.integers(1, 255))
def test_corrupted_files_give_library_errors(pristine, tmp_path_factory, fmt, pick, kind, position, value):
    source, options = pristine[fmt]
    root = tmp_path_factory.mktemp("corrupt")
    shutil.copytree(source, root / "zoo")
    options = {k: (root / "zoo" / v.relative_to(source) if hasattr(v, "relative_to") else v) for k, v in options.items()}
    files = sorted(p for p in (root / "zoo").rglob("*") if p.is_file())
    corrupt(files[int(pick * len(files))], kind, position, value)
    try:
        import_zoo(fmt, root / "zoo", progress=False, **options)
    except ProbegenError as e:
        assert str(e)  # a message naming the file and the problem
    shutil.rmtree(root)
