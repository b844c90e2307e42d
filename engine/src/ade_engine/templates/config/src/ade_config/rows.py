"""Row detectors: label a row "header", "data" or "skip", or return None to let the engine decide."""


def comment_lines(row):
    """Lines starting with '#' are export comments, never data."""
    first = next((v for v in row.values if v not in (None, "")), None)
    if isinstance(first, str) and first.lstrip().startswith("#") and len(first.strip()) > 1 \
            and not first.strip()[1:].strip().isdigit():
        return "skip"
    return None


ROW_DETECTORS = [comment_lines]
