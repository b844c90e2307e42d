"""Header normalization and similarity; value parsers."""

import datetime
import itertools
import random

import pytest

from ade_engine.text import edit_distance, similarity, tokens, within_edits
from ade_engine.values import Invalid, date_order, parse_date, parse_email, parse_number, parse_phone


@pytest.mark.parametrize("header, expected", [
    ("Member First Name", ("member", "first", "name")),
    ("First Name:", ("first", "name")),
    ("firstName", ("first", "name")),
    ("E-mail Address", ("email", "address")),
    ("Member #", ("member", "number")),
    ("Member No.", ("member", "number")),
    ("Date Joined (YYYY-MM-DD)", ("date", "joined")),
    ("Prénom", ("prenom",)),
])
def test_tokens(header, expected):
    assert tokens(header) == expected


def test_within_edits_agrees_with_the_distance_table():
    # Every pair of words up to 4 letters over a 3-letter alphabet (repeats
    # and swaps are common there), then longer words a few edits apart.
    words = ["".join(w) for n in range(5) for w in itertools.product("abc", repeat=n)]
    pairs = list(itertools.product(words, words))
    rng = random.Random(7)
    for _ in range(5000):
        a = "".join(rng.choice("abcd") for _ in range(rng.randint(4, 10)))
        b = list(a)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b)) if b else 0
            op = rng.choice("sdit")
            if op == "s" and b:
                b[i] = rng.choice("abcd")
            elif op == "d" and b:
                del b[i]
            elif op == "i":
                b.insert(i, rng.choice("abcd"))
            elif op == "t" and i + 1 < len(b):
                b[i], b[i + 1] = b[i + 1], b[i]
        pairs.append((a, "".join(b)))
    differ = [(a, b, limit) for a, b in pairs for limit in (0, 1, 2, 3)
              if within_edits(a, b, limit) != (edit_distance(a, b, limit) <= limit)]
    assert differ == []
    assert within_edits("emial", "email", 1) and within_edits("adress", "address", 1)
    assert not within_edits("phone", "phase", 1)


def test_similarity_prefers_the_closest_variant():
    first = tokens("first name")
    assert similarity(tokens("First Name:"), first) == 1.0
    assert similarity(tokens("FirstName"), first) == 1.0
    assert 0.75 < similarity(tokens("Member First Name"), first) < 0.9
    assert similarity(tokens("Frist Name"), first) > 0.75
    assert similarity(tokens("Name"), first) < 0.6
    assert similarity(tokens("Last Name"), first) < 0.6
    assert similarity(tokens("Phone"), first) == 0.0


@pytest.mark.parametrize("text, expected", [
    ("Ada@Example.ORG", "ada@example.org"),
    ("mailto:ada@example.org", "ada@example.org"),
    ("<ada@example.org>", "ada@example.org"),
    ("grace-at-example.org", None),
    ("a@b", None),
    ("a..b@x.org", None),
    ("a b@x.org", None),
])
def test_emails(text, expected):
    result = parse_email(text)
    assert (None if isinstance(result, Invalid) else result) == expected


@pytest.mark.parametrize("value, expected", [
    ("555-0101", "555-0101"),
    ("(555) 010-1234", "555-010-1234"),
    ("+44 20 7946 0958", "+44-20-7946-0958"),
    ("0044 20 7946 0958", "+44-20-7946-0958"),
    ("555-0101 ext. 12", "555-0101 x12"),
    (5550101.0, "5550101"),
    ("12", None),
    ("call me", None),
])
def test_phones(value, expected):
    result = parse_phone(value)
    assert (None if isinstance(result, Invalid) else result) == expected


@pytest.mark.parametrize("value, order, expected", [
    ("2019-04-02", "MDY", datetime.date(2019, 4, 2)),
    ("02/04/2019", "MDY", datetime.date(2019, 2, 4)),
    ("02/04/2019", "DMY", datetime.date(2019, 4, 2)),
    ("02.04.2019", "MDY", datetime.date(2019, 4, 2)),
    ("2 Apr 2019", "MDY", datetime.date(2019, 4, 2)),
    ("Apr 2, 2019", "MDY", datetime.date(2019, 4, 2)),
    ("Tue, 2 Apr 2019 10:00", "MDY", datetime.date(2019, 4, 2)),
    ("2019-04-02T10:30:00", "MDY", datetime.date(2019, 4, 2)),
    ("20190402", "MDY", datetime.date(2019, 4, 2)),
    ("43557", "MDY", datetime.date(2019, 4, 2)),
    (43557, "MDY", datetime.date(2019, 4, 2)),
    (43557.5, "MDY", datetime.date(2019, 4, 2)),
    (datetime.datetime(2019, 4, 2, 0, 0), "MDY", datetime.date(2019, 4, 2)),
    ("1/2/19", "MDY", datetime.date(2019, 1, 2)),
])
def test_dates(value, order, expected):
    assert parse_date(value, order) == expected


@pytest.mark.parametrize("value", ["2023-02-30", "2021-13-01", "31/31/2020", "Feb 30, 2023"])
def test_impossible_dates_say_so(value):
    result = parse_date(value, "DMY")
    assert isinstance(result, Invalid) and result.message == "impossible date"


def test_date_order_comes_from_the_values():
    assert date_order(["02/04/2019", "31/12/2020"]) == "DMY"
    assert date_order(["02/04/2019", "12/31/2020"]) == "MDY"
    assert date_order(["02/04/2019"]) is None


@pytest.mark.parametrize("text, expected", [
    ("1,234.50", 1234.5), ("1.234,50", 1234.5), ("$ 12", 12), ("(12)", -12), ("12%", 0.12),
    ("1,5", 1.5), ("1 000", 1000), ("abc", None),
])
def test_numbers(text, expected):
    result = parse_number(text)
    assert (None if isinstance(result, Invalid) else result) == expected
