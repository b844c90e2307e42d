"""Validators: return (or yield) issues for a record, a dict of field name → normalized value.

They run for every row: return None when the record is fine.
"""

import datetime


def joined_in_the_past(record, row):
    """A member cannot have joined in the future."""
    joined = record["joined_on"]
    if isinstance(joined, datetime.date) and joined > _today(row.run):
        return {"field": "joined_on", "code": "future_date", "message": f"joined on {joined}, in the future"}
    return None


def _today(run):
    """Today's date, read once per run (not per row; not at import: a warm engine outlives a day)."""
    today = run.state.get("today")
    if today is None:
        today = run.state["today"] = datetime.date.today()
    return today


def reachable(record):
    """A member needs an email or a phone (a warning: the row is still kept)."""
    if not record["email"] and not record["phone"]:
        return {"field": "email", "severity": "warning", "code": "unreachable",
                "message": "neither an email nor a phone"}
    return None


VALIDATORS = [joined_in_the_past, reachable]
