"""Target fields of a member roster, in output order, and how to recognize their columns."""

FIELDS = [
    {
        "name": "member_id",
        "label": "Member ID",
        "type": "id",
        "required": True,
        "unique": True,
        "synonyms": ["member #", "member no", "member number", "membership number", "id", "member id"],
    },
    {
        "name": "first_name",
        "label": "First name",
        "required": True,
        "transforms": ["title"],
        "synonyms": ["first", "given name", "forename", "christian name"],
    },
    {
        "name": "last_name",
        "label": "Last name",
        "required": True,
        "transforms": ["title"],
        "synonyms": ["last", "surname", "family name"],
    },
    {
        "name": "email",
        "label": "Email",
        "type": "email",
        "synonyms": ["e-mail", "email address", "mail"],
    },
    {
        "name": "phone",
        "label": "Phone",
        "type": "phone",
        "synonyms": ["phone number", "telephone", "tel", "mobile", "cell"],
    },
    {
        "name": "joined_on",
        "label": "Joined on",
        "type": "date",
        "synonyms": ["join date", "joined", "date joined", "member since", "start date"],
    },
]

SETTINGS = {
    "unmapped_columns": "keep",  # or "drop"
    "ambiguous_dates": "month_first",  # how to read 03/04/2024 when a column does not tell
}


def member_ids(column):
    """Short whole numbers, all different: likely the member ids, whatever the header says."""
    values = [str(v).strip() for v in column.values]
    if len(values) < 3:
        return None
    numeric = all(v.removesuffix(".0").isdigit() and 3 <= len(v.removesuffix(".0")) <= 8 for v in values)
    if numeric and len(set(values)) == len(values):
        return {"member_id": 0.2}
    return None


COLUMN_DETECTORS = [member_ids]
