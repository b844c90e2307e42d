"""`config init DIR` writes the starter template; `config validate [DIR]` imports a
configuration and checks every rule, printing clear errors (exit 1) or a summary (exit 0).
"""

import importlib
import os
import shutil
import sys

from . import config as config_module
from .errors import EngineError

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "config")


def template_files() -> list[str]:
    """Paths of the template's files, relative to its root."""
    out = []
    for root, dirs, files in os.walk(TEMPLATE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                out.append(os.path.relpath(os.path.join(root, name), TEMPLATE_DIR))
    return out


def init(target: str) -> int:
    """Copy the template into `target` (which must not exist or be empty)."""
    if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
        print(f"error: {target} exists and is not an empty directory", file=sys.stderr)
        return 1
    for relative in template_files():
        destination = os.path.join(target, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copyfile(os.path.join(TEMPLATE_DIR, relative), destination)
    print(f"wrote the starter configuration to {target}:")
    for relative in template_files():
        print(f"  {relative}")
    print(f"next: edit src/ade_config/columns.py, then run: python -m ade_engine config validate {target}")
    return 0


def _package_root(target: str) -> str | None:
    for candidate in (os.path.join(target, "src"), target):
        if os.path.isfile(os.path.join(candidate, "ade_config", "__init__.py")):
            return candidate
    return None


def _import_from(root: str):
    for name in [m for m in sys.modules if m == "ade_config" or m.startswith("ade_config.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    try:
        importlib.invalidate_caches()
        return config_module._import_package()
    finally:
        sys.path.remove(root)


def validate(target: str | None) -> int:
    """Import the configuration at `target` (or the installed one) and check every rule."""
    try:
        if target is not None:
            root = _package_root(target)
            if root is None:
                print(f"error: no ade_config package in {target} (expected src/ade_config/__init__.py)",
                      file=sys.stderr)
                return 1
            module = _import_from(root)
        else:
            module = config_module._import_package()
        config = config_module.load_module(module)
        from .check import smoke_test

        problems = smoke_test(config)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    _describe(config, getattr(module, "__file__", "?"))
    return 0


def _describe(config, where: str) -> None:
    print(f"ok: {os.path.dirname(where)}")
    for field in config.fields:
        flags = ", ".join(x for x in ("required" if field.required else "", "unique" if field.unique else "") if x)
        print(f"  field {field.name} ({field.type}{', ' + flags if flags else ''}): "
              f"{len(field.variants)} header spellings")
    print(f"  {len(config.column_detectors)} column detectors, {len(config.row_detectors)} row detectors, "
          f"{len(config.validators)} validators, hooks: {', '.join(config.hooks) or 'none'}")


def config_command(args: list[str]) -> int:
    """`config init DIR` | `config validate [DIR]`."""
    if len(args) == 2 and args[0] == "init":
        return init(args[1])
    if args and args[0] == "validate" and len(args) <= 2:
        return validate(args[1] if len(args) == 2 else None)
    print("usage: python -m ade_engine config init DIR | config validate [DIR]", file=sys.stderr)
    return 1
