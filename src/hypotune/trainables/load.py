"""Finding a trainable by name or reference: the built-in names, "module:attribute",
"/path/file.py:attribute" and "/path/file.toml:table", resolved relative to the study file that
names them, so that a worker in another process, or on another machine, imports the same one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from hypotune.errors import ConfigError
from hypotune.trainables.function import from_function
from hypotune.trainables.protocol import Trainable

BUILT_IN = {"fashion_mnist": "hypotune.fashion:TRAINABLE"}  # name -> reference
DEFAULT = "fashion_mnist"


def load(name: str = DEFAULT) -> Trainable:
    """A trainable by built-in name ("fashion_mnist") or reference: "package.module:attribute", or
    "/path/to/file.py:attribute" (a Trainable or a training function), or "/path/to/file.toml:table"
    (a command trainable, `hypotune.trainables.command`: read afresh each time, as the file may change)."""
    ref = BUILT_IN.get(name, name)
    path, _, table = ref.rpartition(":")
    if path.endswith(".toml") and table:
        from hypotune.trainables.command import from_toml

        return Trainable(**from_toml(Path(path), table))
    return _load(ref)


@functools.cache
def _load(ref: str) -> Trainable:
    module_name, _, attribute = ref.rpartition(":")
    if not module_name or not attribute:
        known = ", ".join(BUILT_IN)
        raise ConfigError(
            f"trainable '{ref}' is neither built in ({known}) nor 'module:attribute', 'file.py:attribute'"
            " or a [trainable] table with a command"
        )
    module = _module(ref, module_name)
    found = getattr(module, attribute, None)
    if callable(found) and not isinstance(found, Trainable) and not isinstance(found, type):
        return from_function(found, ref=ref)
    if not isinstance(found, Trainable):
        raise ConfigError(
            f"trainable '{ref}': {module_name} has no Trainable or training function named '{attribute}'"
        )
    return found if found.ref == ref else _with_ref(found, ref)


def _module(ref: str, module_name: str) -> Any:
    """The module a reference names: imported by name, or executed from its file (its folder
    goes on the import path, as when it runs as a script, so it may import what lies beside it)."""
    if not module_name.endswith(".py"):
        try:
            return importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(f"trainable '{ref}': cannot import {module_name} ({error})") from None
    path = Path(module_name)
    if not path.is_file():
        raise ConfigError(f"trainable '{ref}': no such file {path}")
    unique = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"hypotune_user_{path.stem}_{unique}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if str(path.resolve().parent) not in sys.path:
        sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ConfigError(
            f"trainable '{ref}': {path.name} failed to load: {type(error).__name__}: {error}"
        ) from None
    return module


def resolve_ref(text: str, folder: Path) -> str:
    """A study file's `trainable = "..."`, made absolute: a file (`train.py:fit`, or a command's
    `train.toml:trainable`) or a module with a file of its name (`train:fit` and train.py) beside
    the study is that file."""
    if text in BUILT_IN:
        return text
    module_name, sep, attribute = text.rpartition(":")
    if not sep:
        return text  # not a reference: `load` says why
    named_file = module_name.endswith((".py", ".toml"))
    beside = folder / (module_name if named_file else f"{module_name.replace('.', '/')}.py")
    if beside.is_file():
        return f"{beside.resolve()}:{attribute}"
    if not named_file and not _findable(module_name):
        stems = sorted(p.stem for p in folder.glob("*.py"))
        close = difflib.get_close_matches(module_name, stems, n=1)
        hint = f"; did you mean {close[0]}:{attribute} ({close[0]}.py)?" if close else ""
        wanted = beside.relative_to(folder)
        raise ConfigError(
            f"trainable '{text}': cannot import {module_name}: no {wanted} in {folder.resolve()} "
            f"and no module {module_name!r} on the Python path{hint}"
        )
    return text


def _findable(module_name: str) -> bool:
    """Whether `module_name` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or an empty name
        return False


def importable(trainable: Trainable) -> Trainable:
    """The trainable, once it is sure that worker processes can load it by its reference."""
    where = "define it at the top level of a module on the path and set ref = 'module:attribute'"
    if not trainable.ref or trainable.ref.startswith("__main__:"):
        raise ConfigError(f"trainable '{trainable.name}' cannot reach worker processes: {where}")
    load(trainable.ref)
    return trainable


def _with_ref(trainable: Trainable, ref: str) -> Trainable:
    return dataclasses.replace(trainable, ref=ref)
