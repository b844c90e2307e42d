"""Row detectors: label a row "header", "data" or "skip", or return None to let the engine decide."""


def comment_lines(row):
    """Lines like `# exported 2024-03-01` are export comments, never data (called for every row)."""
    first = row.values[0] if row.values else None
    if isinstance(first, str) and first.startswith("# ") and len(row.values) == 1:
        return "skip"
    return None


ROW_DETECTORS = [comment_lines]
