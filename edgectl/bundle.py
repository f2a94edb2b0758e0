"""Policy bundles: a directory holding a trained policy, its contract and the platform file it was trained on.

    bundle.json    manifest: format, platform, task, seed, contract, policy layout, hashes, metrics
    weights.npz    float32 arrays, W of shape [in, out] (y = x @ W + b)
    platform.toml  the exact platform file used in training
    ...            extra files (e.g. training_curve.png), hashed in the manifest

The runtime trusts nothing in a bundle: load_bundle checks every hash, shape and the contract, and
refuses with the file, the field and the offending value named. A half-copied or edited bundle
must fail loudly on the bench, not fly. Stdlib + numpy only: this module runs on the robot.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .contract import ContractError, normalize, observation_slices, validate_contract
from .fsutil import dumps_strict, replace_dir

FORMAT, FORMAT_VERSION = "edgectl-bundle", 1
MANIFEST, WEIGHTS, PLATFORM = "bundle.json", "weights.npz", "platform.toml"
ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")  # plain names only: no directories, no '..'
_SAVEZ_RESERVED = {"file", "allow_pickle"}  # np.savez's own keyword parameters
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an int"}
_MANIFEST_TYPES = {"created": str, "platform": dict, "task": dict, "seed": int, "contract": dict,
                   "policy": dict, "weights": dict, "metrics": dict, "versions": dict, "files": dict}


class BundleError(ValueError):
    pass


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(v: Any, limit: int = 80) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _get(d: dict, key: str, typ: type, path: str, file: str = MANIFEST) -> Any:
    p = f"{path}.{key}" if path else key
    if key not in d:
        raise BundleError(f"{file}: {p}: missing required key")
    v = d[key]
    if not isinstance(v, typ) or (isinstance(v, bool) and typ is not bool):
        raise BundleError(f"{file}: {p}: expected {_TYPE_NAMES.get(typ, typ.__name__)}, got {_short(v)}")
    return v


def _file_entry(d: dict, path: str) -> tuple[str, str]:
    name, sha = _get(d, "file", str, path), _get(d, "sha256", str, path)
    if not _NAME_RE.match(name):
        raise BundleError(f"{MANIFEST}: {path}.file: expected a plain file name inside the bundle, got {name!r}")
    if not _SHA_RE.match(sha):
        raise BundleError(f"{MANIFEST}: {path}.sha256: expected 64 lowercase hex digits, got {_short(sha)}")
    return name, sha


def _check_finite(name: str, a: np.ndarray) -> None:
    bad = np.argwhere(~np.isfinite(a))
    if len(bad):
        idx = tuple(int(i) for i in bad[0])
        raise BundleError(f"{WEIGHTS}: array {name!r}: non-finite value {a[idx]} at index {list(idx)} ({len(bad)} in total)")


def _check_policy(policy: dict, shapes: dict[str, tuple[int, ...]], contract: dict) -> list[tuple[str, str]]:
    """Check the layer chain obs -> hidden -> action against the array shapes; return (weight, bias) names."""
    if not isinstance(policy, dict):
        raise BundleError(f"{MANIFEST}: policy: expected an object, got {_short(policy)}")
    for key, allowed in (("kind", ["mlp"]), ("activation", sorted(ACTIVATIONS)), ("output_activation", ["clip"])):
        if _get(policy, key, str, "policy") not in allowed:
            raise BundleError(f"{MANIFEST}: policy.{key}: expected one of {allowed}, got {policy[key]!r}")
    layers = _get(policy, "layers", list, "policy")
    if not layers:
        raise BundleError(f"{MANIFEST}: policy.layers: expected at least one layer, got []")
    width, source = contract["observation"]["size"], "contract.observation.size"
    names = []
    for i, layer in enumerate(layers):
        lp = f"policy.layers[{i}]"
        if not isinstance(layer, dict):
            raise BundleError(f"{MANIFEST}: {lp}: expected an object with weight and bias, got {_short(layer)}")
        w, b = _get(layer, "weight", str, lp), _get(layer, "bias", str, lp)
        for key, name in (("weight", w), ("bias", b)):
            if name not in shapes:
                raise BundleError(f"{MANIFEST}: {lp}.{key}: array {name!r} is not in {WEIGHTS} (has {sorted(shapes)})")
        ws, bs = shapes[w], shapes[b]
        if len(ws) != 2 or ws[0] != width:
            raise BundleError(f"{WEIGHTS}: array {w!r} ({lp}.weight): expected shape [{width}, n] ({source} = {width}), got {list(ws)}")
        if tuple(bs) != (ws[1],):
            raise BundleError(f"{WEIGHTS}: array {b!r} ({lp}.bias): expected shape [{ws[1]}], got {list(bs)}")
        width, source = ws[1], f"output of {lp}"
        names.append((w, b))
    if width != contract["action"]["size"]:
        raise BundleError(f"{WEIGHTS}: array {names[-1][0]!r} (last layer): outputs {width}, expected contract.action.size = {contract['action']['size']}")
    return names


def _validate_contract(contract: Any) -> None:
    try:
        validate_contract(contract, where=f"{MANIFEST}: contract")
    except ContractError as e:
        raise BundleError(str(e)) from None


def write_bundle(out_dir: str | os.PathLike, *, contract: dict, policy: dict, weights: dict[str, np.ndarray],
                 platform_toml: bytes, platform_name: str, task: dict, seed: int, metrics: dict, versions: dict,
                 extra_files: dict[str, bytes] | None = None, overwrite: bool = False) -> Path:
    out = Path(out_dir)
    # Everything is checked and serialized in memory first, so a bad argument writes nothing.
    _validate_contract(contract)
    if not isinstance(weights, dict) or not weights:
        raise BundleError(f"{WEIGHTS}: expected a non-empty dict of arrays, got {_short(weights)}")
    arrays = {}
    for name, arr in weights.items():
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in _SAVEZ_RESERVED:
            raise BundleError(f"{WEIGHTS}: array name {name!r}: expected a plain name of [A-Za-z0-9_.-], not {sorted(_SAVEZ_RESERVED)}")
        try:
            arrays[name] = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise BundleError(f"{WEIGHTS}: array {name!r}: not convertible to float32 ({e})") from None
        _check_finite(name, arrays[name])
    _check_policy(policy, {k: a.shape for k, a in arrays.items()}, contract)
    if not isinstance(platform_toml, bytes):
        raise BundleError(f"{PLATFORM}: expected the file's bytes, got {type(platform_toml).__name__}")
    if not isinstance(platform_name, str) or not platform_name:
        raise BundleError(f"{MANIFEST}: platform.name: expected a non-empty string, got {_short(platform_name)}")
    if not isinstance(task, dict) or not isinstance(task.get("name"), str) or not task["name"]:
        raise BundleError(f"{MANIFEST}: task.name: expected a task dict with a non-empty name, got {_short(task)}")
    for key, v, typ in (("seed", seed, int), ("metrics", metrics, dict), ("versions", versions, dict)):
        _get({key: v}, key, typ, "")
    extra = dict(extra_files or {})
    for name, data in extra.items():
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (MANIFEST, WEIGHTS, PLATFORM):
            raise BundleError(f"{name!r}: extra file name must be a plain file name other than {MANIFEST}, {WEIGHTS}, {PLATFORM}")
        if not isinstance(data, bytes):
            raise BundleError(f"{name}: expected the file's bytes, got {type(data).__name__}")

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz = buf.getvalue()
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": {"name": platform_name, "file": PLATFORM, "sha256": _sha(platform_toml)},
        "task": task, "seed": seed, "contract": contract, "policy": policy,
        "weights": {"file": WEIGHTS, "sha256": _sha(npz),
                    "arrays": {k: {"shape": list(a.shape), "dtype": "float32"} for k, a in arrays.items()}},
        "metrics": metrics, "versions": versions,
        "files": {name: _sha(data) for name, data in extra.items()},
    }
    try:
        text = dumps_strict(manifest, indent=2) + "\n"
    except (TypeError, ValueError) as e:
        raise BundleError(f"{MANIFEST}: manifest is not strict JSON ({e}); task, metrics and versions must hold plain values, no NaN") from None
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; pass overwrite=True to replace it")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the runtime may run as another user
        for name, data in {MANIFEST: text.encode(), WEIGHTS: npz, PLATFORM: platform_toml, **extra}.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # a power cut after the rename must not leave empty files behind
        load_bundle(tmp)  # what lands at out_dir must load; never replace a good bundle with a broken one
        replace_dir(tmp, out)  # the old one moved aside, restored if the swap fails
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)
    layers: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)

    @property
    def contract(self) -> dict:
        return self.manifest["contract"]

    @property
    def platform_name(self) -> str:
        return self.manifest["platform"]["name"]

    @property
    def task_name(self) -> str:
        return self.manifest["task"]["name"]

    @property
    def seed(self) -> int:
        return self.manifest["seed"]

    @property
    def metrics(self) -> dict:
        return self.manifest["metrics"]

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Action(s) for a (size,) or (N, size) observation, clipped to [action.low, action.high]."""
        size = self.contract["observation"]["size"]
        x = np.asarray(obs, dtype=np.float64)  # float64 so a huge-but-finite value is not reported as inf
        if x.ndim not in (1, 2) or x.shape[-1] != size:
            got = x.shape[-1] if x.ndim else "a scalar"
            raise BundleError(f"{self.path.name}: act(): observation size {got} (shape {list(x.shape)}), "
                              f"expected contract.observation.size = {size}")
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            idx = tuple(int(i) for i in bad[0])
            name, s = next((n, s) for n, s in observation_slices(self.contract).items() if s.start <= idx[-1] < s.stop)
            where = idx[0] if x.ndim == 1 else list(idx)
            raise ValueError(f"act(): observation has non-finite value {x[idx]} at index {where} (field {name!r}[{idx[-1] - s.start}])")
        h = normalize(self.contract, x)
        activation = ACTIVATIONS[self.manifest["policy"]["activation"]]
        for w, b in self.layers[:-1]:
            h = activation(h @ w + b)
        w, b = self.layers[-1]
        a = self.contract["action"]
        return np.clip(h @ w + b, a["low"], a["high"]).astype(np.float32)


def _read(root: Path, name: str) -> bytes:
    p = root / name
    if not p.is_file():
        raise BundleError(f"{name}: missing from bundle {root}")
    try:
        return p.read_bytes()
    except OSError as e:
        raise BundleError(f"{name}: cannot read ({e.strerror})") from None


def _verify(root: Path, name: str, want: str, field_path: str) -> bytes:
    data = _read(root, name)
    if _sha(data) != want:
        raise BundleError(f"{name}: sha256 mismatch: {MANIFEST} {field_path} says {want}, file has {_sha(data)} "
                          "(modified or corrupted after export)")
    return data


def _parse_manifest(root: Path) -> dict:
    try:
        m = json.loads(_read(root, MANIFEST).decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BundleError(f"{MANIFEST}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise BundleError(f"{MANIFEST}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (char {e.pos})") from None
    if not isinstance(m, dict):
        raise BundleError(f"{MANIFEST}: expected a JSON object, got {_short(m)}")
    if _get(m, "format", str, "") != FORMAT:
        raise BundleError(f"{MANIFEST}: format: expected {FORMAT!r}, got {m['format']!r}")
    if _get(m, "format_version", int, "") != FORMAT_VERSION:
        raise BundleError(f"{MANIFEST}: format_version: expected {FORMAT_VERSION} (the only version this edgectl reads), got {m['format_version']!r}")
    for key, typ in _MANIFEST_TYPES.items():
        _get(m, key, typ, "")
    try:
        datetime.fromisoformat(m["created"])
    except ValueError:
        raise BundleError(f"{MANIFEST}: created: expected an ISO-8601 timestamp, got {_short(m['created'])}") from None
    if not _get(m["platform"], "name", str, "platform"):
        raise BundleError(f"{MANIFEST}: platform.name: expected a non-empty string, got ''")
    _file_entry(m["platform"], "platform")
    _get(m["task"], "name", str, "task")
    _validate_contract(m["contract"])
    _file_entry(m["weights"], "weights")
    for name, meta in _get(m["weights"], "arrays", dict, "weights").items():
        p = f"weights.arrays.{name}"
        if not isinstance(meta, dict):
            raise BundleError(f"{MANIFEST}: {p}: expected an object with shape and dtype, got {_short(meta)}")
        shape = _get(meta, "shape", list, p)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise BundleError(f"{MANIFEST}: {p}.shape: expected a list of non-negative ints, got {_short(shape)}")
        if _get(meta, "dtype", str, p) != "float32":
            raise BundleError(f"{MANIFEST}: {p}.dtype: expected 'float32', got {meta['dtype']!r}")
    for name, sha in m["files"].items():
        if not _NAME_RE.match(name) or name in (MANIFEST, WEIGHTS, PLATFORM):
            raise BundleError(f"{MANIFEST}: files: expected plain extra file names, got {name!r}")
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            raise BundleError(f"{MANIFEST}: files.{name}: expected 64 lowercase hex digits, got {_short(sha)}")
    return m


def _load_arrays(root: Path, m: dict) -> dict[str, np.ndarray]:
    wfile, wsha = _file_entry(m["weights"], "weights")
    data = _verify(root, wfile, wsha, "weights.sha256")
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError(f"a single {type(npz).__name__}, not an npz archive")
        with npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as e:
        raise BundleError(f"{wfile}: corrupt or truncated npz ({type(e).__name__}: {e})") from None
    meta = m["weights"]["arrays"]
    if missing := sorted(set(meta) - set(arrays)):
        raise BundleError(f"{wfile}: arrays {missing} listed in {MANIFEST} weights.arrays are missing from the file")
    if unlisted := sorted(set(arrays) - set(meta)):
        raise BundleError(f"{wfile}: arrays {unlisted} are not listed in {MANIFEST} weights.arrays")
    for name, a in arrays.items():
        if a.dtype != np.float32:
            raise BundleError(f"{wfile}: array {name!r}: dtype {a.dtype}, but {MANIFEST} weights.arrays.{name}.dtype says float32")
        if list(a.shape) != meta[name]["shape"]:
            raise BundleError(f"{wfile}: array {name!r}: shape {list(a.shape)}, but {MANIFEST} weights.arrays.{name}.shape says {meta[name]['shape']}")
        _check_finite(name, a)
        a.setflags(write=False)  # a loaded policy is immutable; in-place edits would bypass every check above
    return arrays


def load_bundle(path: str | os.PathLike, *, expect_platform: str | None = None, expect_task: str | None = None) -> Bundle:
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle directory not found")
    m = _parse_manifest(root)
    if expect_platform is not None and m["platform"]["name"] != expect_platform:
        raise BundleError(f"{MANIFEST}: platform.name: bundle is for platform {m['platform']['name']!r}, expected {expect_platform!r}")
    if expect_task is not None and m["task"]["name"] != expect_task:
        raise BundleError(f"{MANIFEST}: task.name: bundle is for task {m['task']['name']!r}, expected {expect_task!r}")
    _verify(root, *_file_entry(m["platform"], "platform"), "platform.sha256")
    for name, sha in m["files"].items():
        _verify(root, name, sha, f"files.{name}")
    arrays = _load_arrays(root, m)
    names = _check_policy(m["policy"], {k: a.shape for k, a in arrays.items()}, m["contract"])
    return Bundle(path=root, manifest=m, weights=arrays, layers=[(arrays[w], arrays[b]) for w, b in names])
