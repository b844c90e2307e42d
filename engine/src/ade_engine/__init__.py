"""ADE engine: turns messy spreadsheets into normalized tables using the rules of an `ade_config` package.

Light on purpose: `python -m ade_engine --version` imports only this file.
"""

__version__ = "0.2.0"


def preload(xlsx: bool = True) -> None:
    """Import everything a run needs, without per-run side effects, so a forked child starts warm.

    Imports the engine's run path, imports `ade_config` and compiles its rules
    (raising ConfigError when they are broken) and, with `xlsx`, the XLSX
    readers (python-calamine and openpyxl).
    """
    import pkgutil

    # Every module a run may import lazily, so a forked run imports nothing
    # (and never reads the venv again).
    for module in pkgutil.walk_packages(__path__, __name__ + "."):
        if module.name.rsplit(".", 1)[-1] not in ("__main__", "zygote"):
            __import__(module.name)
    from .config import load

    load()
    if xlsx:
        from .readers import workbook  # noqa: F401

        for name in ("python_calamine", "openpyxl"):
            try:
                __import__(name)
            except ImportError:
                pass
