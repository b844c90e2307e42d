"""Built-in text transforms a field can list by name in its `transforms`.

Type conversions (dates to ISO, numbers, phones, emails, booleans, ids) come
from the field's `type` and run after these; see `values.py`.
"""


def trim(value):
    """Strip surrounding whitespace (every text value is trimmed anyway)."""
    return value.strip() if type(value) is str else value


def lower(value):
    """Lowercase text."""
    return value.lower() if type(value) is str else value


def upper(value):
    """Uppercase text."""
    return value.upper() if type(value) is str else value


def title(value):
    """Capitalize each word, after spaces, hyphens and apostrophes: `o'neil-SMITH` → `O'Neil-Smith`."""
    if type(value) is not str:
        return value
    out = []
    start = True
    for char in value:
        out.append(char.upper() if start else char.lower())
        start = char in " -'’." or char.isspace()
    return "".join(out)


def collapse_spaces(value):
    """Collapse inner runs of whitespace into one space."""
    return " ".join(value.split()) if type(value) is str else value


def digits(value):
    """Keep only the digits."""
    if type(value) is not str:
        return value
    return "".join(c for c in value if c.isdigit())


def strip_punctuation(value):
    """Remove everything but letters, digits and spaces."""
    if type(value) is not str:
        return value
    return " ".join("".join(c if c.isalnum() else " " for c in value).split())


BUILTIN = {
    "trim": trim,
    "lower": lower,
    "upper": upper,
    "title": title,
    "collapse_spaces": collapse_spaces,
    "digits": digits,
    "strip_punctuation": strip_punctuation,
}
