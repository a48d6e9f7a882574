"""The pruned checkpoint: a mirror of Sources/TunaEngine/Pruning/ExpertPruner.swift (and the
parts of DerivedCheckpoint.swift it uses), so a torch prune job writes the same tensors as a
native one.

Only some experts of every layer are kept, with no requantization: the router's weight and
bias rows and every `mlp.experts.*` tensor (MXFP4 blocks and scales, dense weights, biases)
are sliced along their leading expert dimension, in ascending expert order, and copied as raw
bytes; every other tensor is copied byte for byte; config.json gets the new expert count; the
tokenizer and generation files are copied along. The weights go into one model.safetensors,
written tensor by tensor from memory-mapped shards (a 13 GB gpt-oss-20b is never held in
memory), laid out as the native SafeTensorsWriter lays them out (largest element size first,
then by name; header with sorted keys, space-padded to 8 bytes).

Tensors are handled as bytes, never as torch tensors, so any dtype the base uses (U8 MXFP4,
BF16, F32, ...) passes through unchanged.
"""
import json
import math
import mmap
import os
import shutil
import struct

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# DerivedCheckpoint.sidecarFiles
SIDECAR_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                 "o200k_base.tiktoken", "chat_template.jinja")
DTYPE_SIZES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
               "U8": 1, "I8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


class CheckpointError(ValueError):
    pass


class SafeTensorsFile:
    """One .safetensors file, memory-mapped: name -> (dtype, shape, raw bytes)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
        if len(self._map) < 8:
            raise CheckpointError(f"{path}: not a safetensors file")
        (n,) = struct.unpack("<Q", self._map[:8])
        try:
            header = json.loads(bytes(self._map[8:8 + n]))
        except ValueError as e:
            raise CheckpointError(f"{path}: bad header: {e}") from e
        self.metadata = header.pop("__metadata__", None) or {}
        self.start = 8 + n
        self.tensors = {}
        for name, info in header.items():
            a, b = info["data_offsets"]
            if info["dtype"] not in DTYPE_SIZES:
                raise CheckpointError(f"{path}: {name}: unknown dtype {info['dtype']}")
            want = DTYPE_SIZES[info["dtype"]] * math.prod(info["shape"])
            if not (0 <= a <= b) or b - a != want or self.start + b > len(self._map):
                raise CheckpointError(f"{path}: {name}: data_offsets {[a, b]} do not hold {want} bytes inside the "
                                      f"file ({len(self._map)} bytes): truncated or corrupt")
            self.tensors[name] = (info["dtype"], list(info["shape"]), self.start + a, self.start + b)

    def raw(self, name):
        _, _, a, b = self.tensors[name]
        return memoryview(self._map)[a:b]


def checkpoint_shards(directory):
    """(declared {tensor: shard} of the index or {}, the shard file names) of a checkpoint
    directory, as Sources/TunaEngine/TensorStore.swift finds them: the shards named by
    model.safetensors.index.json, else model.safetensors, else every *.safetensors in it."""
    index = os.path.join(directory, INDEX_FILE)
    if os.path.exists(index):
        try:
            with open(index) as f:
                declared = json.load(f)["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: not a safetensors index (a weight_map object): {e}") from e
        shards = sorted(set(declared.values()))
    elif os.path.exists(os.path.join(directory, SINGLE_FILE)):
        declared, shards = {}, [SINGLE_FILE]
    else:
        declared = {}
        shards = sorted(n for n in os.listdir(directory) if n.endswith(".safetensors"))
    if not shards:
        raise CheckpointError(f"{directory}: no {SINGLE_FILE}, {INDEX_FILE} or *.safetensors")
    for shard in shards:
        if not isinstance(shard, str) or "/" in shard:
            raise CheckpointError(f"{index}: shard name {shard!r} is not a plain file name")
    return declared, shards


class TensorStore:
    """Every tensor of a checkpoint directory (`checkpoint_shards`), memory-mapped."""

    def __init__(self, directory):
        self.directory = directory
        declared, shards = checkpoint_shards(directory)
        self.owner = {}
        self.files = []
        for shard in shards:
            f = SafeTensorsFile(os.path.join(directory, shard))
            for name in f.tensors:
                if name in self.owner:
                    raise CheckpointError(f"{f.path}: {name} is also in {self.owner[name].path}")
                self.owner[name] = f
            self.files.append(f)
        for name, shard in declared.items():
            if name not in self.owner or os.path.basename(self.owner[name].path) != shard:
                raise CheckpointError(f"{os.path.join(directory, shard)}: missing tensor {name}")

    @property
    def names(self):
        return sorted(self.owner)

    def info(self, name):
        dtype, shape, _, _ = self.owner[name].tensors[name]
        return dtype, shape

    def raw(self, name):
        return self.owner[name].raw(name)


def sizes(store):
    """(logical parameters, bytes): an MXFP4 byte holds two weights, scales are not parameters
    (ExpertPruner.sizes)."""
    params = nbytes = 0
    for name in store.names:
        dtype, shape = store.info(name)
        count = 1
        for d in shape:
            count *= d
        b = count * DTYPE_SIZES[dtype]
        nbytes += b
        if name.endswith("_scales"):
            continue
        params += 2 * b if name.endswith("_blocks") else count
    return {"parameters": params, "bytes": nbytes}


def expert_layer(name):
    """The layer of a tensor with a leading expert dimension: the router's weight and bias and
    everything under `mlp.experts.`; None for every other tensor."""
    parts = name.split(".")
    if len(parts) < 5 or parts[0] != "model" or parts[1] != "layers" or parts[3] != "mlp" or not parts[2].isdigit():
        return None
    if parts[4] == "experts":
        return int(parts[2])
    if parts[4] == "router" and len(parts) == 6 and parts[5] in ("weight", "bias"):
        return int(parts[2])
    return None


def refuse_base(out, base, what="prune"):
    """Writing the pruned checkpoint over its base would destroy the base: refused under any
    spelling of the same directory (a symlink, `x/../`, another path to the same inode)."""
    same = os.path.realpath(out) == os.path.realpath(base)
    if not same and os.path.exists(out) and os.path.exists(base):
        same = os.path.samefile(out, base)
    if same:
        raise CheckpointError(f"{what}: the output directory is the base checkpoint; choose another")


def _config_counts(cfg):
    layers = cfg["num_hidden_layers"]
    experts = cfg["num_local_experts"]
    top_k = cfg.get("num_experts_per_tok", cfg.get("experts_per_token"))
    return layers, experts, top_k


def write_safetensors(path, entries, metadata):
    """entries: [(name, dtype, shape, [memoryview chunks])]. Layout as SafeTensorsWriter: by
    element size (largest first), then by name; contiguous data; header padded with spaces."""
    ordered = sorted(entries, key=lambda e: (-DTYPE_SIZES[e[1]], e[0]))
    header, offset = {}, 0
    for name, dtype, shape, chunks in ordered:
        n = sum(len(c) for c in chunks)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"  # then renamed: a crash never leaves half a file under the real name
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, chunks in ordered:
            for c in chunks:
                f.write(c)
    os.replace(tmp, path)


def write_config(base_dir, out_dir, n):
    """config.json with the expert count set to n (`num_local_experts`, and `num_experts` where
    present); the experts-per-token aliases are checked, not changed (top-k stays)."""
    path = os.path.join(base_dir, "config.json")
    with open(path) as f:
        o = json.load(f)
    if not isinstance(o, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    o["num_local_experts"] = n
    if "num_experts" in o:
        o["num_experts"] = n
    for alias in ("num_experts_per_tok", "experts_per_token"):
        if alias in o:
            k = o[alias]
            if not isinstance(k, int) or isinstance(k, bool) or k > n:
                raise CheckpointError(f"{path}: {alias} exceeds the {n} experts kept")
    tmp = os.path.join(out_dir, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(o, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, "config.json"))


def write(base_dir, keep, out_dir):
    """Writes the checkpoint keeping experts `keep[layer]` (ascending lists, the same length for
    every layer) of `base_dir` into `out_dir`. Returns (sizes before, sizes after)."""
    with open(os.path.join(base_dir, "config.json")) as f:
        layers, experts, top_k = _config_counts(json.load(f))
    if len(keep) != layers:
        raise CheckpointError(f"prune: {len(keep)} keep lists for {layers} layers")
    n = len(keep[0]) if keep else 0
    for layer, k in enumerate(keep):
        if len(k) != n or len(set(k)) != n or any(not (0 <= x < experts) for x in k) or list(k) != sorted(k):
            raise CheckpointError(f"prune: layer {layer} keeps {k}; every layer must keep {n} distinct experts in ascending order")
    if top_k is not None and n < top_k:
        raise CheckpointError(f"prune: keeping {n} experts, fewer than the {top_k} experts per token")
    refuse_base(out_dir, base_dir)
    store = TensorStore(base_dir)
    entries = []
    for name in store.names:
        dtype, shape = store.info(name)
        raw = store.raw(name)
        layer = expert_layer(name)
        if layer is None:
            entries.append((name, dtype, shape, [raw]))
            continue
        if not shape or shape[0] != experts:
            raise CheckpointError(f"{store.owner[name].path}: {name}: leading dimension {shape[0] if shape else 0}, "
                                  f"expected {experts} experts")
        per = len(raw) // experts
        entries.append((name, dtype, [n] + shape[1:], [raw[x * per:(x + 1) * per] for x in keep[layer]]))
    os.makedirs(out_dir, exist_ok=True)
    stale = os.path.join(out_dir, INDEX_FILE)  # an index left there would win over model.safetensors
    if os.path.exists(stale):
        os.remove(stale)
    write_safetensors(os.path.join(out_dir, SINGLE_FILE), entries,
                      {"format": "pt", "pruned_by": "tuna", "experts_kept": str(n)})
    for name in SIDECAR_FILES:
        src, dst = os.path.join(base_dir, name), os.path.join(out_dir, name)
        if os.path.exists(src):
            if os.path.lexists(dst):
                os.remove(dst)
            shutil.copyfile(src, dst)
    write_config(base_dir, out_dir, n)
    return sizes(store), sizes(TensorStore(out_dir))
