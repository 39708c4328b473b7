"""The Small CNN Zoo (Unterthiner et al. 2020) files, read and written.

Files in one folder:
  * ``weights.npy``: ``[rows, 4970]`` float32, one row per (network, checkpoint); only the kept
    rows are read (in file order, with plain reads), so only they are ever in memory;
  * ``metrics.csv.gz``: one line per row: ``config.*`` hyper-parameters (``activation``,
    ``w_init``, ``b_init``, ``init_std``, ``l2reg``, ``dropout``, ``learning_rate``,
    ``optimizer``, ``train_fraction``, ``dataset``...), ``modeldir``, ``step``,
    ``test_accuracy``, ``test_loss``, ``train_accuracy``, ``train_loss``;
  * ``layout.csv``: ``varname,start_idx,end_idx,shape`` mapping column ranges to tensors (TF/Keras
    names ending ``kernel:0``/``bias:0``, kernels HWIO, shape written as a Python tuple). The
    published rows hold TF's variables in name order, each layer's bias before its kernel
    (``sequential/conv2d/bias:0`` (16,), ``sequential/conv2d/kernel:0`` (3, 3, 1, 16), ...); the
    reader takes every variable from the columns ``layout.csv`` gives it, in whatever order, and
    the writer writes the published order.

Protocol (as NFN and later work read it): keep the final checkpoint of each network
(``step == max step``, 86 in the published files; runs that stopped earlier are skipped and
counted, or with ``last_checkpoint="run"`` each run's own last checkpoint is kept, as the
dataset's colab does), keep rows with finite weights and test accuracy (others are skipped and
counted), then split: first half train+val (shuffled with Python's ``random.Random(0)``, 80%
train, 20% val), second half test. With the published permutation (``split_file``, one row index
per line, no header, e.g. NFN's ``cifar10_split.csv``) rows are taken in that order first, which
reproduces NFN's test set exactly; without one, in file order.

The zoo's architecture is ``small_cnn`` with ``valid`` convolutions (Keras's default, which the
dataset's ``train_network.py`` uses: 28x28 -> 13 -> 6 -> 2); the activation
(``config.activation``) varies per network, so the arch lists the zoo's activations and each
network carries ``activation_id``. Targets follow the library's CNN zoos:
``test_accuracy``, ``test_loss``, ``train_accuracy``, ``train_loss``, ``epoch``, ``network`` (row
in ``weights.npy``), ``init_std``, ``l2``, ``dropout``, ``learning_rate``, ``train_fraction``, and
integer-coded ``activation``, ``optimizer``, ``w_init``, ``b_init`` (code books in
``meta["codes"]``).
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import itertools
import math
import os
import random
import re
import warnings
import zlib
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from probegen_jax.archs import Arch, flatten_params, make_arch
from probegen_jax.archs.cnn import ACTIVATION_LEAF, ACTIVATIONS, PADDINGS, SMALL_CNN_LAYERS
from probegen_jax.errors import DataFileError, ShapeMismatchError, UnknownNameError, ZooFormatError
from probegen_jax.io import atomic_write, write_text
from probegen_jax.zoo.formats.common import SkipLog, progress_iter, require_dir
from probegen_jax.zoo.zoo import Zoo

NUMERIC_TARGETS = {"test_accuracy": "test_accuracy", "test_loss": "test_loss", "train_accuracy": "train_accuracy",
                   "train_loss": "train_loss", "config.init_std": "init_std", "config.l2reg": "l2",
                   "config.dropout": "dropout", "config.learning_rate": "learning_rate",
                   "config.train_fraction": "train_fraction"}
CATEGORICAL_TARGETS = {"config.activation": "activation", "config.optimizer": "optimizer",
                       "config.w_init": "w_init", "config.b_init": "b_init"}
ACTIVATION_NAMES = {"leakyrelu": "leaky_relu", "leaky_relu": "leaky_relu"}
IMAGE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "svhn_cropped": 32, "svhn": 32}
KERAS_NAMES = ("sequential/conv2d", "sequential/conv2d_1", "sequential/conv2d_2", "sequential/dense")
FINAL_EPOCH = 86
LAST_CHECKPOINT_RULES = ("zoo", "run")  # the zoo's largest step for every run (NFN), or each run's own (colab)
PADDING_COLUMN = "config.padding"  # not in the published files (all valid); written for zoos of either padding
METRIC_COLUMNS = ("config.dataset", PADDING_COLUMN, *NUMERIC_TARGETS, *CATEGORICAL_TARGETS)  # those an import reads
CHUNK_ROWS = 4096
METRIC_BATCH_ROWS = 65536  # rows per batch of the general metrics parser
METRIC_SAMPLE_ROWS = 1024  # rows that decide which metrics columns are numeric
DECOMPRESS_BYTES = 1 << 22  # metrics.csv.gz is decompressed and its step column parsed in pieces of this size


# ----------------------------------------------------------------------------- layout


def read_layout(path: Path) -> list[tuple[str, int, int, tuple[int, ...]]]:
    """``[(varname, start, end, shape)]`` from ``layout.csv`` in column order (the file may list
    them in any order), checked to tile the columns, each range to hold its shape."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    rows = []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"varname", "start_idx", "end_idx", "shape"} - set(reader.fieldnames or [])
            if missing:
                raise ZooFormatError(f"{path}: missing columns {sorted(missing)} (have {reader.fieldnames})")
            for n, row in enumerate(reader, start=2):
                shape = ast.literal_eval(row["shape"])
                shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,)))
                start, end = int(row["start_idx"]), int(row["end_idx"])
                if end - start != math.prod(shape):
                    raise ZooFormatError(f"{path}: line {n}: columns {start}:{end} cannot hold shape {shape}")
                rows.append((row["varname"], start, end, shape))
    except ZooFormatError:
        raise
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError, csv.Error) as e:
        raise ZooFormatError(f"{path}: unreadable layout ({type(e).__name__}: {e})") from e
    if not rows:
        raise ZooFormatError(f"{path}: empty layout")
    rows.sort(key=lambda r: r[1])
    position = 0
    for varname, start, end, _ in rows:
        if start != position:
            raise ZooFormatError(f"{path}: {varname} starts at column {start}, expected {position}")
        position = end
    return rows


def _name_order(prefix: str) -> list[str | int]:
    """Sort key of Keras layer names: ``conv2d`` < ``conv2d_1`` < ``conv2d_2`` < ``conv2d_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", prefix)]


def _layer_variables(layout: Sequence[tuple[str, int, int, tuple[int, ...]]], *,
                     where: str) -> dict[str, dict[str, tuple[str, tuple[int, ...]]]]:
    """``{layer prefix: {"kernel": (varname, shape), "bias": (varname, shape)}}``, each layer with
    exactly one of each."""
    layers: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    for varname, _, _, shape in layout:
        prefix, _, leaf = varname.rpartition("/")
        kind = next((k for k in ("kernel", "bias") if leaf.startswith(k)), None)
        if kind is None:
            raise ZooFormatError(f"{where}: variable {varname!r} is neither a kernel nor a bias")
        if kind in layers.setdefault(prefix, {}):
            raise ZooFormatError(f"{where}: layer {prefix!r} has two {kind}s ({layers[prefix][kind][0]}, {varname})")
        layers[prefix][kind] = (varname, shape)
    for prefix, variables in layers.items():
        if len(variables) != 2:
            have, = variables
            raise ZooFormatError(f"{where}: layer {prefix!r} has a {have} ({variables[have][0]}) but no "
                                 f"{'bias' if have == 'kernel' else 'kernel'}")
    return layers


def layout_to_params(layout: Sequence[tuple[str, int, int, tuple[int, ...]]], *, where: str) -> dict[str, str]:
    """``{varname: "conv0/kernel", ...}`` whatever the variables' column order (the published rows
    hold each layer's bias before its kernel): a layer is a variable prefix with one kernel and one
    bias of the kernel's output size; 4-D kernels are the convs, numbered in Keras's name order
    (``conv2d``, ``conv2d_1``, ...), the one 2-D kernel the dense layer."""
    layers = _layer_variables(layout, where=where)
    convs, dense = [], []
    for prefix in sorted(layers, key=_name_order):
        (kernel, kshape), (bias, bshape) = layers[prefix]["kernel"], layers[prefix]["bias"]
        if len(kshape) not in (2, 4):
            raise ShapeMismatchError(f"{where}: {kernel} has shape {kshape}, not a conv (4-D) or dense (2-D) kernel")
        if bshape != kshape[-1:]:
            raise ShapeMismatchError(f"{where}: {bias} has shape {bshape}, expected {kshape[-1:]} for its kernel "
                                     f"{kernel} {kshape}")
        (convs if len(kshape) == 4 else dense).append(prefix)
    if len(convs) != SMALL_CNN_LAYERS or len(dense) != 1:
        raise ZooFormatError(f"{where}: expected {SMALL_CNN_LAYERS} conv layers (4-D kernels) and one dense layer "
                             f"(a 2-D kernel), found {convs} and {dense}")
    param_layer = {prefix: f"conv{i}" for i, prefix in enumerate(convs)} | {dense[0]: "dense0"}
    return {varname: f"{param_layer[prefix]}/{kind}"
            for prefix, variables in layers.items() for kind, (varname, _) in variables.items()}


# ----------------------------------------------------------------------------- metrics


class _Column:
    """A CSV column kept compactly: float64 while every value parses, else category codes.
    Values arrive in batches and are parsed by numpy, not one Python call per cell."""

    def __init__(self) -> None:
        self.float_chunks: list[np.ndarray] | None = []
        self.code_chunks: list[np.ndarray] = []
        self.vocab: dict[str, int] = {}

    @classmethod
    def parsed(cls, values: np.ndarray) -> _Column:
        """A column parsed whole: float values, or strings to code."""
        column = cls()
        if values.dtype.kind == "f":
            column.float_chunks = [values]
        else:
            column.float_chunks = None
            column._code(values)
        return column

    def extend(self, values: Sequence[str]) -> None:
        if self.float_chunks is not None:
            floats = _parse_floats(values)
            if floats is not None:
                self.float_chunks.append(floats)
                return
            earlier, self.float_chunks = self.float_chunks, None
            for chunk in earlier:
                self._code([repr(v) for v in chunk.tolist()])
        self._code(values)

    def _code(self, values: Sequence[str]) -> None:
        words, inverse = np.unique(np.asarray(values, dtype=str), return_inverse=True)
        ids = np.asarray([self.vocab.setdefault(w, len(self.vocab)) for w in words.tolist()], np.int32)
        self.code_chunks.append(ids[inverse.reshape(-1)])

    def numeric(self) -> np.ndarray | None:
        if self.float_chunks is None:
            return None
        if len(self.float_chunks) != 1:
            self.float_chunks = [np.concatenate(self.float_chunks) if self.float_chunks else np.zeros(0)]
        return self.float_chunks[0]

    def take(self, rows: np.ndarray) -> _Column:
        """This column at ``rows``."""
        numeric = self.numeric()
        return _Column.parsed(numeric[rows] if numeric is not None else self.strings()[rows].astype(str))

    def strings(self) -> np.ndarray:
        if self.float_chunks is not None:
            return np.asarray([repr(v) for v in self.numeric().tolist()], dtype=object)
        words = np.empty(len(self.vocab), dtype=object)
        for word, code in self.vocab.items():
            words[code] = word
        return words[np.concatenate(self.code_chunks)] if self.code_chunks else words[:0]


def _parse_floats(values: Sequence[str]) -> np.ndarray | None:
    """``values`` as float64 (empty cells NaN), or None when one of them is not a number."""
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        try:
            return np.asarray([v or "nan" for v in values], dtype=np.float64)
        except ValueError:
            return None


def _text(data: bytes) -> io.TextIOWrapper:
    """CSV bytes as text (UTF-8, line ends kept for the CSV parsers)."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline="")


class MetricsFile:
    """``metrics.csv.gz`` decompressed once (47 MB for the published 270,000 rows), in pieces that
    a caller can parse as they come (``line_chunks``), and kept to be read as text as often as the
    parsers below need it."""

    def __init__(self, path: Path, *, data: bytes | None = None):
        if data is None and not path.is_file():
            raise DataFileError(f"{path}: file not found")
        self.path = path
        self._data = data

    @property
    def data(self) -> bytes:
        if self._data is None:
            for _ in self.line_chunks():
                pass
        return self._data

    def line_chunks(self) -> Iterator[bytes]:
        """The decompressed file in pieces of whole lines (``DECOMPRESS_BYTES`` or so each), each
        yielded as soon as it is decompressed; the whole file is kept once the last is through."""
        if self._data is not None:
            yield self._data
            return
        pieces, rest = [], b""
        try:
            with gzip.open(self.path, "rb") as f:
                while block := f.read(DECOMPRESS_BYTES):
                    block = rest + block
                    cut = block.rfind(b"\n") + 1
                    rest = block[cut:]
                    if cut:
                        pieces.append(block[:cut])
                        yield pieces[-1]
        except (OSError, EOFError, zlib.error) as e:
            raise ZooFormatError(f"{self.path}: unreadable metrics ({type(e).__name__}: {e})") from e
        if rest:
            pieces.append(rest)
            yield rest
        self._data = b"".join(pieces)

    def text(self) -> io.TextIOWrapper:
        return _text(self.data)

    def rows(self, rows: np.ndarray, total: int) -> MetricsFile | None:
        """The header and data rows ``rows`` (in that order) of a file of ``total`` rows as a file of
        their own, or None where lines are not rows one to one (a quoted cell, which may hold a
        line end, or blank lines)."""
        data = self.data
        if b'"' in data:
            return None
        ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
        if not data.endswith(b"\n"):
            ends = np.append(ends, len(data) - 1)
        if len(ends) != total + 1:
            return None
        starts = np.concatenate([[0], ends[:-1] + 1])
        lines = [data[starts[0]:ends[0] + 1], *(data[a:b + 1] for a, b in zip(starts[rows + 1].tolist(),
                                                                               ends[rows + 1].tolist()))]
        if not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        return MetricsFile(self.path, data=b"".join(lines))


def read_metrics(source: Path | MetricsFile, columns: Collection[str] | None = None) -> dict[str, _Column]:
    """``metrics.csv.gz`` as compact columns: ``columns`` (those present) and ``step``, or every
    column but ``modeldir``. Columns whose first
    ``METRIC_SAMPLE_ROWS`` cells are all numbers are parsed as floats by numpy's C parser, the rest as
    strings; a file that breaks that (a later non-number, an empty cell, a short line) is parsed
    again row by row, which names the offending line."""
    metrics = source if isinstance(source, MetricsFile) else MetricsFile(source)
    try:
        header, numeric = _header_and_numeric_columns(metrics)
        keep = {"step", *columns} if columns is not None else set(header) - {"modeldir"}
        try:
            parsed = _read_columns_typed(metrics, header, numeric, keep)
        except ValueError:
            parsed = _read_columns_by_rows(metrics, keep)
    except (UnicodeDecodeError, csv.Error) as e:
        raise ZooFormatError(f"{metrics.path}: unreadable metrics ({type(e).__name__}: {e})") from e
    if "step" not in parsed or parsed["step"].numeric() is None:
        raise ZooFormatError(f"{metrics.path}: missing numeric column 'step' (columns {sorted(header)})")
    return parsed


def _header_and_numeric_columns(metrics: MetricsFile) -> tuple[list[str], set[str]]:
    """The header and the kept columns whose sampled cells all parse as (non-empty) numbers."""
    reader = csv.reader(metrics.text())
    header = next(reader, None)
    if not header:
        raise ZooFormatError(f"{metrics.path}: empty metrics file")
    sample = list(itertools.islice(reader, METRIC_SAMPLE_ROWS))
    if not sample or set(map(len, sample)) != {len(header)}:
        return header, set()
    cells = list(zip(*sample))
    return header, {name for i, name in enumerate(header)
                    if name != "modeldir" and "" not in cells[i] and _parse_floats(cells[i]) is not None}


def _loadtxt(metrics: MetricsFile, usecols: Sequence[int], dtype: Any) -> np.ndarray:
    """Columns ``usecols`` of the CSV (header skipped) as ``[rows, len(usecols)]``, by numpy's C
    parser; ``ValueError`` on a cell of another type or a line of another length."""
    f = metrics.text()
    f.readline()
    return _loadtxt_lines(f, usecols, dtype)


def _loadtxt_lines(f: io.TextIOBase, usecols: Sequence[int], dtype: Any) -> np.ndarray:
    """``_loadtxt`` of a text stream of data lines (no header)."""
    return np.loadtxt(f, delimiter=",", quotechar='"', comments=None, usecols=list(usecols), dtype=dtype, ndmin=2)


def _read_columns_typed(metrics: MetricsFile, header: list[str], numeric: set[str],
                        keep: set[str]) -> dict[str, _Column]:
    kept = [(i, name) for i, name in enumerate(header) if name in keep]
    floats = [(i, n) for i, n in kept if n in numeric]
    strings = [(i, n) for i, n in kept if n not in numeric]
    if not floats:
        raise ValueError("no numeric column")  # nothing for the C parser to gain: parse by rows
    parsed = {n: _Column.parsed(c) for (_, n), c in zip(floats, _loadtxt(metrics, [i for i, _ in floats], np.float64).T)}
    if strings:
        parsed |= {n: _Column.parsed(c) for (_, n), c in zip(strings, _loadtxt(metrics, [i for i, _ in strings], str).T)}
    return {n: parsed[n] for _, n in kept}


def _read_columns_by_rows(metrics: MetricsFile, keep: set[str]) -> dict[str, _Column]:
    """The general parser: batches of ``METRIC_BATCH_ROWS`` rows, each column float while every
    value parses (empty cells NaN), else category codes."""
    reader = csv.reader(metrics.text())
    header = next(reader)
    kept = [(i, name) for i, name in enumerate(header) if name in keep]
    columns = {name: _Column() for _, name in kept}
    line = 2
    for batch in iter(lambda: list(itertools.islice(reader, METRIC_BATCH_ROWS)), []):
        if set(map(len, batch)) != {len(header)}:
            bad = next(j for j, row in enumerate(batch) if len(row) != len(header))
            raise ZooFormatError(f"{metrics.path}: line {line + bad} has {len(batch[bad])} fields, "
                                 f"the header {len(header)}")
        cells = list(zip(*batch))
        for i, name in kept:
            columns[name].extend(cells[i])
        line += len(batch)
    return columns


def read_step_column(metrics: MetricsFile, on_steps: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """The ``step`` column alone (numpy's C parser): a quick first pass that tells which rows of
    ``weights.npy`` to read. It parses the file piece by piece as it decompresses, and
    ``on_steps(first_row, steps)`` sees each piece's steps at once, so reading can start before the
    file is through (up to the first quoted cell, which may hold a line end: from there the rest
    is parsed whole)."""
    try:
        header: list[str] | None = None
        parsed: list[np.ndarray] = []
        streaming, rows = True, 0
        for chunk in metrics.line_chunks():
            if header is None:
                first, _, chunk = chunk.partition(b"\n")
                header = next(csv.reader([first.decode("utf-8")]), [])
                if "step" not in header:
                    raise ZooFormatError(f"{metrics.path}: missing numeric column 'step' (columns {sorted(header)})")
            streaming = streaming and b'"' not in chunk
            if streaming and chunk.strip():
                parsed.append(_loadtxt_lines(_text(chunk), [header.index("step")], np.float64)[:, 0])
                if on_steps is not None:
                    on_steps(rows, parsed[-1])
                rows += len(parsed[-1])
        if header is None:
            raise ZooFormatError(f"{metrics.path}: empty metrics file")
        if streaming:
            return np.concatenate(parsed) if parsed else np.zeros(0)
        return _loadtxt(metrics, [header.index("step")], np.float64)[:, 0]
    except ZooFormatError:
        raise
    except ValueError as e:  # a non-numeric step or a line with a different number of fields
        raise ZooFormatError(f"{metrics.path}: unreadable metrics ({e})") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise ZooFormatError(f"{metrics.path}: unreadable metrics ({type(e).__name__}: {e})") from e


def read_permutation(path: Path, rows: int) -> np.ndarray:
    """A published split file: one row index per line (no header), a permutation of the rows."""
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():  # an empty file: numpy warns, then the check below names it
            warnings.simplefilter("ignore", UserWarning)
            perm = np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (ValueError, UnicodeDecodeError) as e:
        raise ZooFormatError(f"{path}: not one integer per line ({e})") from e
    if perm.ndim != 1 or len(perm) != rows or not np.array_equal(np.sort(perm), np.arange(rows)):
        span = f", range {perm.min()}..{perm.max()}" if perm.size else ""
        raise ZooFormatError(f"{path}: not a permutation of the {rows} rows of weights.npy ({len(perm)} entries{span})")
    return perm


def nfn_iid_split(n: int) -> dict[str, np.ndarray]:
    """NFN's split: second half test; first half shuffled by ``random.Random(0)``, 80/20 train/val."""
    test_point = int(0.5 * n)
    trainval = list(range(test_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    return {"train": np.asarray(trainval[:val_point], np.int64), "val": np.asarray(trainval[val_point:], np.int64),
            "test": np.arange(test_point, n)}


# ----------------------------------------------------------------------------- reading


def _activation_name(value: str, *, where: str) -> str:
    name = ACTIVATION_NAMES.get(value.lower(), value.lower())
    if name not in ACTIVATIONS:
        raise UnknownNameError(f"{where}: activation {value!r} has no counterpart in the small_cnn "
                               f"architecture (available: {sorted(ACTIVATIONS)})")
    return name


class NpyRows:
    """Rows of a 2-D ``.npy`` matrix read with plain file reads: only the rows asked for are read,
    and nothing is memory-mapped, so the process holds just the rows it keeps."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise DataFileError(f"{path}: file not found")
        try:
            with path.open("rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except Exception as e:  # numpy raises ValueError, OSError, EOFError, SyntaxError for damaged headers
            raise ZooFormatError(f"{path}: unreadable or truncated .npy ({type(e).__name__}: {e})") from e
        if len(shape) != 2 or dtype.kind != "f" or fortran:
            raise ShapeMismatchError(f"{path}: expected a C-ordered 2-D float matrix [rows, params], got {dtype} "
                                     f"{shape}{' (Fortran order)' if fortran else ''}")
        self.path, self.shape, self.dtype = path, tuple(shape), dtype
        self.row_bytes = shape[1] * dtype.itemsize
        if path.stat().st_size < self.offset + shape[0] * self.row_bytes:
            raise ZooFormatError(f"{path}: unreadable or truncated .npy (shorter than its {shape} header says)")

    def prefetch(self, rows: np.ndarray) -> None:
        """Ask the kernel to start reading ``rows`` into the page cache (asynchronously, where the
        platform has ``posix_fadvise``), so a later ``read`` finds them there."""
        if not hasattr(os, "posix_fadvise"):
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for row in np.sort(rows).tolist():
                os.posix_fadvise(fd, self.offset + row * self.row_bytes, self.row_bytes, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def read_into(self, rows: np.ndarray, out: np.ndarray, at: np.ndarray) -> None:
        """``out[at[j]] = matrix[rows[j]]`` (``out``: C-ordered, of the file's dtype; ``rows``
        ascending reads the file front to back), each row read straight into its place."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        with self.path.open("rb", buffering=0) as f:
            for row, j in zip(rows.tolist(), at.tolist()):
                f.seek(self.offset + row * self.row_bytes)
                if f.readinto(view[j * self.row_bytes:(j + 1) * self.row_bytes]) != self.row_bytes:
                    raise ZooFormatError(f"{self.path}: row {row} is cut short")


class EarlyPrefetch:
    """``on_steps`` for ``read_step_column``: asks the kernel for the rows of ``weights.npy`` at
    ``step`` while the step column still parses, or, for the final step (known only at the end),
    for the rows at the largest step so far. Either way every chosen row is asked for (the piece
    that holds a final row counts it in its largest step); where steps grow further on in the file,
    some rows asked for turn out not to be final (in the published files none: every network's last
    checkpoint is at the final step)."""

    def __init__(self, weights: NpyRows, step: float | None):
        self.weights, self.step, self.largest = weights, step, -math.inf

    def __call__(self, first_row: int, steps: np.ndarray) -> None:
        if self.step is None and np.isfinite(steps).any():
            self.largest = max(self.largest, float(np.nanmax(steps)))
        rows = first_row + np.flatnonzero(steps == (self.largest if self.step is None else self.step))
        self.weights.prefetch(rows[rows < self.weights.shape[0]])


def _chosen_metrics(metrics: MetricsFile, chosen: np.ndarray, n_rows: int) -> dict[str, _Column]:
    """The import's metrics columns at rows ``chosen`` (in that order): only those lines parse,
    where lines are rows one to one; else the whole file, then those rows."""
    chosen_lines = metrics.rows(chosen, n_rows)
    if chosen_lines is not None:
        try:
            header, numeric = _header_and_numeric_columns(chosen_lines)
            return _read_columns_typed(chosen_lines, header, numeric, {"step", *METRIC_COLUMNS})
        except (ValueError, UnicodeDecodeError, csv.Error):
            pass  # the whole file's parse names the problem
    return {name: column.take(chosen) for name, column in read_metrics(metrics, METRIC_COLUMNS).items()}


def _read_chosen_rows(weights: NpyRows, layout: Sequence[tuple[str, int, int, tuple[int, ...]]],
                      names: dict[str, str], chosen: np.ndarray, *,
                      progress: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Rows ``chosen`` of ``weights.npy`` as ``{param: [len(chosen), ...]}`` (in ``chosen``'s order,
    read front to back in chunks, each row straight into its place; the params are views of one
    ``[len(chosen), columns]`` float32 matrix) and which of them are finite."""
    matrix = np.empty((len(chosen), weights.shape[1]), weights.dtype)
    by_row = np.argsort(chosen, kind="stable")
    chunks = range(0, len(chosen), CHUNK_ROWS)
    for start in progress_iter(chunks, total=len(chunks), desc="reading weights.npy", progress=progress):
        at = by_row[start:start + CHUNK_ROWS]
        weights.read_into(chosen[at], matrix, at)
    matrix = matrix.astype(np.float32, copy=False)
    finite = np.isfinite(matrix).all(axis=1)
    return {names[v]: matrix[:, lo:hi].reshape(-1, *shape) for v, lo, hi, shape in layout}, finite


def read_run_column(metrics: MetricsFile) -> tuple[np.ndarray, np.ndarray] | None:
    """(each row's run as an integer code, the runs' names): runs are told apart by ``modeldir``
    (one per network); None without that column."""
    header = next(csv.reader(metrics.text()), [])
    if "modeldir" not in header:
        return None
    column = header.index("modeldir")
    coded = _column_codes(metrics.data, column, len(header))
    if coded is not None:
        return coded
    try:
        names = _loadtxt(metrics, [column], str)[:, 0]
    except ValueError:  # a line of another length: the row-by-row parser names it
        names = _read_columns_by_rows(metrics, {"modeldir"})["modeldir"].strings().astype(str)
    vocab, codes = np.unique(names, return_inverse=True)
    return codes.reshape(-1), vocab


def _column_codes(data: bytes, column: int, columns: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``read_run_column``'s result from the CSV bytes split at commas (a few times quicker than a
    text parse of 270,000 names), where no cell is quoted and every line has the field; else None."""
    if b'"' in data:
        return None
    codes: dict[bytes, int] = {}
    try:
        cells = [line.split(b",", column + 1)[column] for line in data.splitlines()[1:]]
    except IndexError:  # a short or blank line
        return None
    rows = np.fromiter((codes.setdefault(cell, len(codes)) for cell in cells), np.int64, len(cells))
    return rows, np.asarray([name.decode("utf-8") for name in codes], dtype=str)


def run_last_steps(steps: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Each run's largest step (NaN steps ignored; -inf for a run without any)."""
    last = np.full(int(runs.max()) + 1 if runs.size else 0, -np.inf)
    np.fmax.at(last, runs, steps)
    return last


def _float_or_nan(words: np.ndarray) -> np.ndarray:
    """Cells as floats, NaN where a cell is not a number."""
    def one(word: str) -> float:
        try:
            return float(word)
        except ValueError:
            return math.nan

    vocab, inverse = np.unique(words.astype(str), return_inverse=True)
    return np.asarray([one(w) for w in vocab.tolist()], np.float64)[inverse.reshape(-1)]


def _padding(metrics: dict[str, _Column], *, where: str) -> str:
    """The convolutions' padding: ``config.padding`` where the file has it (one value), else
    ``valid``, the published zoo's."""
    if PADDING_COLUMN not in metrics:
        return "valid"
    values = sorted(set(metrics[PADDING_COLUMN].strings().astype(str).tolist()))
    if len(values) != 1 or values[0] not in PADDINGS:
        raise ZooFormatError(f"{where}: {PADDING_COLUMN} must be one of {list(PADDINGS)} for every row, got {values}")
    return values[0]


def _skip_meta(log: SkipLog, reasons: dict[str, int], **detail: Any) -> dict[str, Any]:
    """``meta["skipped"]``: the total, ``reasons`` (reason -> count), examples, and ``detail``."""
    return {**log.as_meta(), "reasons": {k: v for k, v in reasons.items() if v}, **detail}


def _rows_at_step(steps: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None, wanted: float, rule: str, *,
                  where: str) -> np.ndarray:
    """Which rows are final: at step ``wanted`` (rule ``"zoo"``), or each run's last (``"run"``)."""
    if rule == "zoo":
        return steps == wanted
    if runs is None:
        raise ZooFormatError(f"{where}: last_checkpoint='run' needs the 'modeldir' column to tell the runs apart")
    return steps == run_last_steps(steps, runs[0])[runs[0]]


def _runs_left_out(steps: np.ndarray, runs: tuple[np.ndarray, np.ndarray] | None, at_step: np.ndarray, wanted: float,
                   final: bool, skipped: SkipLog, reasons: dict[str, int], *, where: str) -> dict[str, Any]:
    """Count (in ``skipped`` and ``reasons``) the runs without a row ``at_step``; for the final step,
    also how many ended at each earlier step (``{"last_steps": {step: runs}}``)."""
    if runs is None:
        return {}
    codes, names = runs
    last = run_last_steps(steps, codes)
    missed = np.setdiff1d(np.arange(len(last)), codes[at_step])
    reasons["stopped before the final step" if final else "no checkpoint at the step"] = len(missed)
    for run in missed.tolist():
        skipped.add(f"{where}: run {names[run]} " + (f"ends at step {last[run]:g}, before the final step {wanted:g}"
                                                     if final else f"has no checkpoint at step {wanted:g}"))
    if not (final and len(missed)):
        return {}
    ends, counts = np.unique(last[missed], return_counts=True)
    return {"last_steps": {f"{e:g}": int(c) for e, c in zip(ends.tolist(), counts.tolist())}}


def read_small_cnn_zoo(path: str | os.PathLike, *, split_file: str | os.PathLike | None = None,
                       step: int | str = "final", last_checkpoint: str = "zoo", image_size: int | None = None,
                       progress: bool = True) -> Zoo:
    """The Small CNN Zoo's final checkpoints (or those at ``step``) as one ``small_cnn`` zoo with
    ``valid`` convolutions, as the published networks were trained (or the padding a
    ``config.padding`` column gives, which this library's writer adds).

    ``last_checkpoint`` says which checkpoint is final: ``"zoo"`` (the zoo's largest step for every
    run, as NFN's loader does; runs that stopped earlier are skipped and counted) or ``"run"`` (each
    run's own last checkpoint, as the dataset's colab does; runs are told apart by ``modeldir``).
    Rows with NaN or inf weights or test accuracy are skipped and counted: ``meta["skipped"]``
    has ``count``, ``reasons`` (reason -> count) and examples."""
    if last_checkpoint not in LAST_CHECKPOINT_RULES:
        raise UnknownNameError(f"unknown last_checkpoint rule {last_checkpoint!r}; available: "
                               f"{list(LAST_CHECKPOINT_RULES)}")
    root = require_dir(Path(path), "Small CNN Zoo folder")
    layout = read_layout(root / "layout.csv")
    weights = NpyRows(root / "weights.npy")
    if weights.shape[1] != layout[-1][2]:
        raise ShapeMismatchError(f"{root / 'weights.npy'}: {weights.shape[1]} columns, layout.csv describes "
                                 f"{layout[-1][2]}")
    names = layout_to_params(layout, where=str(root / "layout.csv"))
    metrics_path = root / "metrics.csv.gz"
    metrics_file = MetricsFile(metrics_path)
    early = EarlyPrefetch(weights, None if step == "final" else float(step))
    steps = read_step_column(metrics_file, on_steps=early)  # the disk starts on rows as the steps parse
    n_rows = len(steps)
    if n_rows != weights.shape[0]:
        raise ZooFormatError(f"{metrics_path}: {n_rows} rows, weights.npy {weights.shape[0]}")
    order = read_permutation(Path(split_file), n_rows) if split_file else np.arange(n_rows)
    runs = read_run_column(metrics_file)
    wanted = float(np.nanmax(steps)) if step == "final" else float(step)
    at_step = _rows_at_step(steps, runs, wanted, last_checkpoint if step == "final" else "zoo", where=str(metrics_path))
    chosen = order[at_step[order]]
    if not chosen.size:
        raise ZooFormatError(f"{metrics_path}: no rows at step {wanted:g}")
    skipped, reasons = SkipLog(), {}
    detail = _runs_left_out(steps, runs, at_step, wanted, step == "final", skipped, reasons, where=str(metrics_path))
    if runs is not None and last_checkpoint == "run" and step == "final":
        detail["runs_below_final_step"] = int(np.sum(steps[chosen] < wanted))

    metrics = _chosen_metrics(metrics_file, chosen, n_rows)
    out, finite = _read_chosen_rows(weights, layout, names, chosen, progress=progress)
    accuracy_ok = np.ones_like(finite)
    if "test_accuracy" in metrics:
        column = metrics["test_accuracy"]
        accuracy = column.numeric() if column.numeric() is not None else _float_or_nan(column.strings())
        metrics["test_accuracy"] = _Column.parsed(accuracy)
        accuracy_ok = np.isfinite(accuracy)
    for reason, bad, what in (("non-finite weights", ~finite, "weights.npy: row {} has NaN or inf weights"),
                              ("non-finite test accuracy", finite & ~accuracy_ok,
                               "metrics.csv.gz: row {} has a NaN or inf test_accuracy")):
        reasons[reason] = int(bad.sum())
        for row in chosen[bad].tolist():
            skipped.add(str(root / what.format(row)))
    keep = finite & accuracy_ok
    kept = np.flatnonzero(keep)  # positions in ``chosen``, and rows of ``metrics``
    if not kept.size:
        raise ZooFormatError(f"{root}: no row at step {wanted:g} has finite weights and test accuracy "
                             f"({skipped.examples[:3]})")
    if not keep.all():
        out = {k: v[keep] for k, v in out.items()}
        chosen = chosen[keep]

    targets: dict[str, np.ndarray] = {"network": chosen.astype(np.int64), "epoch": steps[chosen].astype(np.int32)}
    for column, name in NUMERIC_TARGETS.items():
        if column in metrics and metrics[column].numeric() is not None:
            targets[name] = metrics[column].numeric()[kept].astype(np.float32)
    codes: dict[str, list[str]] = {}
    for column, name in CATEGORICAL_TARGETS.items():
        if column in metrics:
            vocab, codes_of_rows = np.unique(metrics[column].strings()[kept].astype(str), return_inverse=True)
            if name == "activation":
                renamed = [_activation_name(v, where=str(metrics_path)) for v in vocab.tolist()]
                vocab, merged = np.unique(np.asarray(renamed, dtype=str), return_inverse=True)
                codes_of_rows = merged[codes_of_rows]
            targets[name] = codes_of_rows.reshape(-1).astype(np.int32)
            codes[name] = vocab.tolist()
    activations = codes.get("activation", ["relu"])
    dataset = str(metrics["config.dataset"].strings()[kept[0]]) if "config.dataset" in metrics else ""
    shapes = {names[v]: shape for v, _, _, shape in layout}
    conv0 = shapes["conv0/kernel"]
    size = image_size or IMAGE_SIZE.get(dataset, 28)
    arch = make_arch("small_cnn", input_shape=(size, size, conv0[2]), channels=conv0[3],
                     num_classes=shapes["dense0/kernel"][1], padding=_padding(metrics, where=str(metrics_path)),
                     activation=activations[0] if len(activations) == 1 else tuple(activations))
    if len(activations) > 1:
        out[ACTIVATION_LEAF] = targets["activation"].copy()
    params = arch.unflatten(out, where=str(root / "weights.npy"))
    return Zoo(arch=arch, params=params, targets=targets, splits=nfn_iid_split(len(chosen)),
               meta={"format": "small-cnn-zoo", "source": str(root), "dataset": dataset, "step": wanted,
                     "last_checkpoint": last_checkpoint if step == "final" else None,
                     "rows": n_rows, "split_file": str(split_file) if split_file else None, "codes": codes,
                     "skipped": _skip_meta(skipped, reasons, **detail), "default_target": "test_accuracy",
                     "image_shape": [size, size, int(conv0[2])]})


# ----------------------------------------------------------------------------- writing


def keras_layout(arch: Arch) -> list[tuple[str, str, tuple[int, ...]]]:
    """``[(varname, param path, shape)]`` in the published files' column order: TF's name order,
    so each layer's bias before its kernel."""
    shapes = {k: tuple(v.shape) for k, v in flatten_params(arch.param_shapes()).items() if k != ACTIVATION_LEAF}
    layers = sorted({k.split("/")[0] for k in shapes}, key=lambda n: (n.startswith("dense"), n))
    if len(layers) != len(KERAS_NAMES):
        raise ZooFormatError(f"the Small CNN Zoo layout has {len(KERAS_NAMES)} layers; this arch has {layers}")
    return [(f"{keras}/{kind}:0", f"{layer}/{kind}", shapes[f"{layer}/{kind}"])
            for keras, layer in zip(KERAS_NAMES, layers) for kind in ("bias", "kernel")]


def _config_columns(zoo: Zoo) -> dict[str, list[Any]]:
    """``config.*`` and metric columns from the zoo's targets and meta (NaN / '' when absent)."""
    n, t, codes = len(zoo), zoo.targets, dict(zoo.meta.get("codes", {}))
    act = zoo.arch.config.get("activation", "relu")
    if isinstance(act, str):
        activation = [act] * n
    else:
        ids = np.asarray(zoo.params[ACTIVATION_LEAF])
        activation = [list(act)[int(i)] for i in ids]

    def numeric(name: str) -> list[float]:
        return [float(v) for v in t[name]] if name in t else [math.nan] * n

    def categorical(name: str, default: str = "") -> list[str]:
        if name in t and name in codes:
            return [codes[name][int(v)] for v in t[name]]
        return [default] * n

    epoch = [int(v) for v in t["epoch"]] if "epoch" in t else [FINAL_EPOCH] * n
    network = [int(v) for v in t["network"]] if "network" in t else list(range(n))
    return {
        "config.activation": activation, "config.b_init": categorical("b_init", "zeros"),
        "config.dataset": [str(zoo.meta.get("dataset", ""))] * n, "config.dnn_architecture": ["cnn"] * n,
        "config.dropout": numeric("dropout"), "config.epochs": [FINAL_EPOCH] * n,
        "config.epochs_between_checkpoints": [20] * n, "config.init_std": numeric("init_std"),
        "config.l2reg": numeric("l2"), "config.learning_rate": numeric("learning_rate"),
        "config.num_layers": [3] * n, "config.num_units": [int(zoo.arch.config.get("channels", 16))] * n,
        "config.optimizer": categorical("optimizer"), PADDING_COLUMN: [zoo.arch.config.get("padding", "same")] * n,
        "config.random_seed": [42] * n,
        "config.train_fraction": numeric("train_fraction"), "config.w_init": categorical("w_init", "normal"),
        "modeldir": [f"net_{i}" for i in network], "step": epoch,
        "test_accuracy": numeric("test_accuracy"), "test_loss": numeric("test_loss"),
        "train_accuracy": numeric("train_accuracy"), "train_loss": numeric("train_loss"),
    }


def _write_npy_rows(path: Path, zoo: Zoo, layout: Sequence[tuple[str, str, tuple[int, ...]]], progress: bool) -> None:
    flat = flatten_params(zoo.params)
    width = sum(math.prod(s) for _, _, s in layout)
    n = len(zoo)

    def write(f) -> None:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, width)})
        for start in progress_iter(range(0, n, CHUNK_ROWS), total=-(-n // CHUNK_ROWS), desc="writing weights.npy",
                                   progress=progress):
            rows = slice(start, min(start + CHUNK_ROWS, n))
            block = np.concatenate([np.asarray(flat[p][rows], "<f4").reshape(rows.stop - rows.start, -1)
                                    for _, p, _ in layout], axis=1)
            f.write(np.ascontiguousarray(block).tobytes())

    atomic_write(path, write)


def write_small_cnn_zoo(zoo: Zoo, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True) -> Path:
    """Write a ``small_cnn`` zoo as ``weights.npy``, ``metrics.csv.gz``, ``layout.csv`` and
    ``split.csv`` (the identity permutation, the file NFN's loader asks for), one row per member."""
    if zoo.arch.name != "small_cnn":
        raise ZooFormatError(f"the Small CNN Zoo format holds small_cnn networks; this zoo's architecture is "
                             f"{zoo.arch.name!r}")
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: already exists and is not empty; pass overwrite=True (--overwrite)")
    layout = keras_layout(zoo.arch)
    rows, position = ["varname,start_idx,end_idx,shape"], 0
    for varname, _, shape in layout:
        rows.append(f'{varname},{position},{position + math.prod(shape)},"{shape}"')
        position += math.prod(shape)
    columns = _config_columns(zoo)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(list(columns))
    writer.writerows(zip(*columns.values()))
    _write_npy_rows(out / "weights.npy", zoo, layout, progress)
    atomic_write(out / "metrics.csv.gz", lambda f: f.write(gzip.compress(text.getvalue().encode(), mtime=0)))
    write_text(out / "split.csv", "".join(f"{i}\n" for i in range(len(zoo))))
    write_text(out / "layout.csv", "\n".join(rows) + "\n")
    return out
