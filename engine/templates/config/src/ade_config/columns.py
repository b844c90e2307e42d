"""Target fields of a member roster, with the header spellings that map to them."""

FIELDS = [
    {
        "name": "member_id",
        "label": "Member ID",
        "synonyms": ["member id", "id", "member #", "member no", "member number", "membership number"],
        "required": True,
    },
    {
        "name": "first_name",
        "label": "First name",
        "synonyms": ["first", "first name", "given name", "forename"],
        "required": True,
    },
    {
        "name": "last_name",
        "label": "Last name",
        "synonyms": ["last", "last name", "surname", "family name"],
        "required": True,
    },
    {
        "name": "email",
        "label": "Email",
        "synonyms": ["e-mail", "email address", "e-mail address", "mail"],
        "required": False,
    },
    {
        "name": "phone",
        "label": "Phone",
        "synonyms": ["phone number", "telephone", "tel", "mobile", "cell"],
        "required": False,
    },
    {
        "name": "joined_on",
        "label": "Joined on",
        "synonyms": ["join date", "joined", "date joined", "member since", "start date"],
        "required": False,
    },
]
