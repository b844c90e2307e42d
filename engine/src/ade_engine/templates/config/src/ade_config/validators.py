"""Validators: yield issues for a record (a dict of field name → normalized value)."""

import datetime


def joined_in_the_past(record):
    """A member cannot have joined in the future."""
    joined = record.get("joined_on")
    if isinstance(joined, datetime.date) and joined > datetime.date.today():
        yield {"field": "joined_on", "code": "future_date", "message": f"joined on {joined}, in the future"}


def reachable(record):
    """A member needs an email or a phone (a warning: the row is still kept)."""
    if not record.get("email") and not record.get("phone"):
        yield {"field": "email", "severity": "warning", "code": "unreachable",
               "message": "neither an email nor a phone"}


VALIDATORS = [joined_in_the_past, reachable]
