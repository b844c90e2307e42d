"""Loading the field definitions of the installed ade_config package."""

import importlib
from dataclasses import dataclass

from .header import normalize


@dataclass(frozen=True)
class Field:
    """One target column: its name, label, normalized synonyms and whether it is required."""

    name: str
    label: str
    synonyms: tuple[str, ...]
    required: bool


def parse_fields(raw: object) -> list[Field]:
    """Validate `ade_config.columns.FIELDS` and turn it into Field objects."""
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError("ade_config.columns.FIELDS must be a non-empty list of dicts")
    fields: list[Field] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"FIELDS[{index}] must be a dict with a non-empty string 'name'")
        name = item["name"]
        if name in seen:
            raise ValueError(f"FIELDS has a duplicate field name {name!r}")
        seen.add(name)
        label = item.get("label") or name
        extra = item.get("synonyms") or []
        if isinstance(extra, str) or not all(isinstance(s, str) for s in extra):
            raise ValueError(f"FIELDS[{index}] ({name}): 'synonyms' must be a list of strings")
        synonyms: list[str] = []
        for text in [name, str(label), *extra]:
            key = normalize(text)
            if key and key not in synonyms:
                synonyms.append(key)
        fields.append(Field(name, str(label), tuple(synonyms), bool(item.get("required", False))))
    return fields


def load_fields() -> list[Field]:
    """Import ade_config and return its fields; import errors propagate to the caller."""
    importlib.import_module("ade_config")
    columns = importlib.import_module("ade_config.columns")
    return parse_fields(getattr(columns, "FIELDS"))
