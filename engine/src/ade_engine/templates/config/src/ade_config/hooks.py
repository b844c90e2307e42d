"""Per-run hooks. Keep per-run state in `run.state`, never in module globals:
a warm engine imports this package once and then runs it many times.
"""


def on_run_start(run):
    """Called once, before the first input is read."""
    run.state["tables"] = 0


def on_table_validated(run, table):
    """Called after each table is normalized and validated."""
    run.state["tables"] += 1
    run.log(f"roster table {table.index}: {table.rows} members, {table.issues['errors']} errors")
