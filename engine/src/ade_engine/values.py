"""Cell values: recognizing and parsing emails, phones, dates, numbers and booleans.

Every parser takes a raw cell (a string from a CSV, or a typed value from a
workbook) and returns the normalized value or an `Invalid` saying why not.
No `re` (start-up time); each parser is a few string operations.
"""

import datetime as _dt

_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
_WEEKDAYS = frozenset({"mon", "tue", "tues", "wed", "thu", "thur", "thurs", "fri", "sat", "sun", "monday",
                       "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"})
_EXCEL_EPOCH = _dt.date(1899, 12, 30)
_EMAIL_LOCAL_EXTRA = frozenset("!#$%&'*+/=?^_`{|}~.-")
_EMAIL_LOCAL_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") | _EMAIL_LOCAL_EXTRA
# Whether a domain is valid, for the domains seen: a column holds few distinct ones
# (a pure function of the text, so the answers hold across runs of a warm engine).
_DOMAINS: dict = {}
_DOMAINS_KEPT = 4096
_PHONE_SEPARATORS = frozenset(" -./()")
_TRUE = frozenset({"true", "yes", "y", "1", "x", "t", "on", "✓", "✔"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off", ""})


class Invalid:
    """A value that a parser rejected, with the reason (shown in the issue)."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message

    def __repr__(self) -> str:
        return f"Invalid({self.message!r})"


def text_of(value) -> str:
    """A cell as text: `1001.0` → `1001`, dates as ISO, None → ''."""
    if value is None:
        return ""
    kind = type(value)
    if kind is str:
        return value.strip()
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if kind is float:
        if value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return repr(value)
    if kind is _dt.datetime:
        if not (value.hour or value.minute or value.second or value.microsecond):
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return str(value).strip()


def parse_email(value):
    """`Ada@Example.ORG` → `ada@example.org`; `mailto:` and `<…>` are stripped."""
    text = value.strip() if type(value) is str else text_of(value)
    if text[:1] in "mM" and text[:7].lower() == "mailto:":
        text = text[7:]
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text.count("@") != 1:
        return Invalid("not an email address")
    local, _, domain = text.partition("@")
    if not _valid_local(local):
        return Invalid("not an email address")
    valid = _DOMAINS.get(domain)
    if valid is None:
        valid = _valid_domain(domain)
        if len(_DOMAINS) < _DOMAINS_KEPT:
            _DOMAINS[domain] = valid
    if not valid:
        return Invalid("not an email address")
    return text.lower()


def _valid_local(local: str) -> bool:
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    if local.isascii():
        return _EMAIL_LOCAL_ASCII.issuperset(local)
    return all(c.isalnum() or c in _EMAIL_LOCAL_EXTRA for c in local)


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not labels[-1].isalpha() or len(labels[-1]) < 2:
        return False
    if domain.replace(".", "").replace("-", "").isalnum() and "-." not in domain and ".-" not in domain:
        return domain[0] not in ".-" and domain[-1] != "-" and ".." not in domain
    return False


def parse_phone(value):
    """Separators become `-`, `00` becomes `+`, an extension is kept as ` x123`: 7 to 15 digits."""
    if type(value) in (int, float) and value == int(value):
        value = str(int(value))
    text = value.strip() if type(value) is str else text_of(value)
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    main, extension = _split_extension(text)
    if main.startswith("00"):
        main = "+" + main[2:]
    plus = main.startswith("+")
    groups, current, digits = [], [], 0
    for char in main[1:] if plus else main:
        if char.isdigit():
            current.append(char)
            digits += 1
        elif char in _PHONE_SEPARATORS:
            if current:
                groups.append("".join(current))
                current = []
        else:
            return Invalid("not a phone number")
    if current:
        groups.append("".join(current))
    if not 7 <= digits <= 15 or not groups:
        return Invalid("not a phone number (7 to 15 digits)")
    formatted = ("+" if plus else "") + "-".join(groups)
    return f"{formatted} x{extension}" if extension else formatted


def _has_letter(text: str) -> bool:
    """Whether any character is a letter (ASCII text has one exactly when its cases differ)."""
    if text.isascii():
        return text.lower() != text.upper()
    return any(c.isalpha() for c in text)


def _split_extension(text: str) -> tuple[str, str]:
    if text.isdigit() or ("#" not in text and not _has_letter(text)):
        return text, ""
    lower = text.lower()
    for marker in ("extension", "ext.", "ext", " x", "#"):
        at = lower.rfind(marker)
        if at > 0:
            tail = text[at + len(marker):].strip(" .:")
            if tail.isdigit():
                return text[:at].strip(), tail
    return text, ""


def from_serial(number):
    """An Excel date serial (1900 system) as a date."""
    if not 1 <= number < 2958466:
        return Invalid("not a date (Excel serial out of range)")
    days = int(number)
    if days == 60:
        return Invalid("impossible date (1900-02-29, an Excel quirk)")
    if days < 60:
        days += 1
    return _EXCEL_EPOCH + _dt.timedelta(days=days)


def parse_date(value, order: str = "MDY"):
    """A date from a date cell, an Excel serial or text, as a `date`.

    Text may be ISO (`2019-04-02`, with or without a time), numeric with the
    year last (`02/04/2019`: `order` says whether that is day or month first,
    dots always mean day first), with a month name (`2 Apr 2019`, `Apr 2,
    2019`), or 8 digits (`20190402`). Two-digit years are 2000-2049 or 1950-1999.
    Impossible dates (`2023-02-30`) are Invalid, saying so.
    """
    kind = type(value)
    if kind is _dt.datetime:
        return value.date()
    if kind is _dt.date:
        return value
    if kind in (int, float):
        return from_serial(value)
    text = value.strip() if kind is str else text_of(value)
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit() \
            and text[5:7].isdigit() and text[8:].isdigit():
        return _build(int(text[:4]), int(text[5:7]), int(text[8:]))
    parts, dots = _date_parts(text)
    if parts is None:
        return Invalid("not a date")
    if len(parts) == 1:
        return _single_number_date(parts[0])
    if len(parts) != 3:
        return Invalid("not a date")
    return _three_part_date(parts, "DMY" if dots else order)


def _date_parts(text: str):
    """Words of a date with any time of day and weekday removed; whether dots separate them."""
    if "T" in text and text[:4].isdigit():
        text = text.split("T", 1)[0]
    words = text.replace(",", " ").split()
    while len(words) > 1 and (":" in words[-1] or words[-1].lower() in ("am", "pm")):
        words.pop()
    if words and words[0].lower().rstrip(".") in _WEEKDAYS:
        words.pop(0)
    if not words or len(words) > 3:
        return None, False
    joined = " ".join(words)
    dots = "." in joined and "/" not in joined and "-" not in joined
    parts = joined.replace("-", " ").replace("/", " ").replace(".", " ").split()
    if not all(p.isalnum() for p in parts):
        return None, False
    return parts, dots


def _single_number_date(part: str):
    if len(part) == 8 and part.isdigit():
        return _build(int(part[:4]), int(part[4:6]), int(part[6:]))
    if len(part) == 5 and part.isdigit():
        return from_serial(int(part))
    return Invalid("not a date")


def _three_part_date(parts: list[str], order: str):
    names = [p for p in parts if not p.isdigit()]
    if len(names) > 1:
        return Invalid("not a date")
    if names:
        month = _MONTHS.get(names[0].lower())
        if month is None:
            return Invalid("not a date")
        numbers = [p for p in parts if p.isdigit()]
        if len(numbers[0]) == 4:
            year, day = numbers
        else:
            day, year = numbers
        return _build(_year(year), month, int(day))
    a, b, c = parts
    if len(a) == 4:
        return _build(int(a), int(b), int(c))
    if len(c) not in (2, 4) or len(a) > 2 or len(b) > 2:
        return Invalid("not a date")
    if order == "DMY":
        return _build(_year(c), int(b), int(a))
    return _build(_year(c), int(a), int(b))


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        return 2000 + year if year < 50 else 1900 + year
    return year


def _build(year: int, month: int, day: int):
    if not 1000 <= year <= 9999 or not 1 <= month <= 12:
        return Invalid("impossible date")
    try:
        return _dt.date(year, month, day)
    except ValueError:
        return Invalid("impossible date")


def date_order(values) -> str | None:
    """`DMY` or `MDY` when numeric dates in `values` show which comes first (a part above 12)."""
    day_first = month_first = 0
    for value in values:
        if type(value) is not str or "/" not in value and "-" not in value:
            continue
        parts = value.strip().split(" ")[0].replace("-", "/").split("/")
        if len(parts) != 3 or not all(p.isdigit() for p in parts) or len(parts[0]) == 4:
            continue
        if int(parts[0]) > 12:
            day_first += 1
        elif int(parts[1]) > 12:
            month_first += 1
    if day_first == month_first:
        return None
    return "DMY" if day_first > month_first else "MDY"


def parse_number(value):
    """`1,234.50`, `1.234,50`, `$ 12`, `(12)` → a number; `12%` → 0.12. Ints stay ints."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    if kind is bool:
        return Invalid("not a number")
    text = text_of(value)
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1]
    text = text.strip().strip("$€£¥").replace(" ", "").replace("\u00a0", "").replace("'", "")
    percent = text.endswith("%")
    if percent:
        text = text[:-1]
    text = _decimal_point(text)
    if text is None:
        return Invalid("not a number")
    try:
        number = int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        return Invalid("not a number")
    if number != number or number in (float("inf"), float("-inf")):
        return Invalid("not a number")
    if percent:
        number = number / 100
    return -number if negative else number


def _decimal_point(text: str) -> str | None:
    """The text with thousands separators removed and `,` decimals as `.`."""
    commas, dots = text.count(","), text.count(".")
    if commas and dots:
        if text.rfind(",") > text.rfind("."):
            return text.replace(".", "").replace(",", ".")
        return text.replace(",", "")
    if commas == 1:
        head, tail = text.split(",")
        return text.replace(",", "") if len(tail) == 3 and head.lstrip("+-") else text.replace(",", ".")
    if commas > 1:
        return text.replace(",", "")
    if dots > 1:
        return text.replace(".", "")
    return text


def parse_integer(value):
    """A whole number; `12.0` → 12."""
    number = parse_number(value)
    if type(number) is Invalid:
        return number
    if type(number) is float:
        if not number.is_integer():
            return Invalid("not a whole number")
        return int(number)
    return number


def parse_boolean(value):
    """yes/no, true/false, y/n, 1/0, x/blank → True/False."""
    if type(value) is bool:
        return value
    text = text_of(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return Invalid("not yes or no")


def parse_id(value):
    """An identifier as text: `1001.0` → `1001`; inner whitespace is refused."""
    text = value.strip() if type(value) is str else text_of(value)
    if " " in text or not text.isprintable():
        return Invalid("an identifier has no spaces")
    return text


def parse_string(value):
    """Text with inner runs of whitespace collapsed."""
    text = value.strip() if type(value) is str else text_of(value)
    if "  " in text or "\n" in text or "\t" in text or "\r" in text:
        text = " ".join(text.split())
    return text


PARSERS = {
    "string": parse_string,
    "email": parse_email,
    "phone": parse_phone,
    "date": parse_date,
    "number": parse_number,
    "integer": parse_integer,
    "boolean": parse_boolean,
    "id": parse_id,
}
