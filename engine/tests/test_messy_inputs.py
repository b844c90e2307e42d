"""Inputs shaped like real exports: each asserts how the table was found and mapped."""

import datetime
import os

import openpyxl

from conftest import SAMPLES, workbook, write


def test_the_sample_roster_with_a_title_a_comment_and_blank_rows(engine):
    result = engine(os.path.join(SAMPLES, "members.csv"))
    assert result.code == 0, result.stderr
    table = result.one("run.table.summary")
    assert table["header_row"] == 3 and table["rows"] == 12
    assert result.mapping() == {"member_id": "Member #", "first_name": "First Name", "last_name": "SURNAME",
                                "email": "E-mail Address", "phone": "Phone", "joined_on": "Date Joined"}
    assert table["unmapped_columns"] == ["Notes"]
    assert table["skipped_rows"]["blank"] == 2
    rows = result.csv("members.table-1.csv")
    assert rows[0] == ["member_id", "first_name", "last_name", "email", "phone", "joined_on", "Notes"]
    assert rows[1] == ["1001", "Ada", "Lovelace", "ada@example.org", "555-0101", "2019-04-02", "founding member"]
    assert len(rows) == 13


def test_the_new_users_export_succeeds_with_issues(engine, tmp_path):
    # The export from the issue: title, blank rows, "Member First Name", no id column,
    # an invalid email and an impossible date.
    path = write(tmp_path / "export.csv",
                 "Riverside Rowing Club\n\nMember First Name,Last,Email,Joined\n"
                 "ada,lovelace,ada@example.org,2019-04-02\n"
                 "Grace,Hopper,grace-at-example.org,2023-02-30\n\nAlan,Turing,alan@example.org,2020-01-09\n")
    result = engine(path)
    assert result.code == 0, result.stderr
    assert result.mapping() == {"first_name": "Member First Name", "last_name": "Last", "email": "Email",
                                "joined_on": "Joined"}
    codes = sorted((i["code"], i["field"], i["row"]) for i in result.issues)
    assert codes == [("invalid_date", "joined_on", 5), ("invalid_email", "email", 5),
                     ("missing_required_field", "member_id", None)]
    bad_date = next(i for i in result.issues if i["code"] == "invalid_date")
    assert bad_date["value"] == "2023-02-30" and "impossible date" in bad_date["message"]
    assert bad_date["cell"] == "D5" and bad_date["column"] == "Joined"
    rows = result.csv("export.table-1.csv")
    assert rows[1] == ["", "Ada", "Lovelace", "ada@example.org", "", "2019-04-02"]
    assert rows[2] == ["", "Grace", "Hopper", "grace-at-example.org", "", "2023-02-30"], "bad values are kept"
    summary = result.one("run.validation.summary")
    assert summary["errors"] == 3 and summary["by_field"] == {"email": 1, "joined_on": 1, "member_id": 1}


def test_a_two_line_header(engine, tmp_path):
    path = write(tmp_path / "two-line.csv",
                 "Member,First,Last,E-mail,Date\n#,Name,Name,Address,Joined\n"
                 "1,Ada,Lovelace,ada@x.org,02/04/2019\n2,Grace,Hopper,g@x.org,31/12/2020\n")
    result = engine(path)
    table = result.one("run.table.summary")
    assert table["header_rows"] == [1, 2]
    assert result.mapping() == {"member_id": "Member #", "first_name": "First Name", "last_name": "Last Name",
                                "email": "E-mail Address", "joined_on": "Date Joined"}
    rows = result.csv("two-line.table-1.csv")
    assert [r[5] for r in rows[1:]] == ["2019-04-02", "2020-12-31"], "31/12 shows the column is day first"


def test_merged_group_headings_in_a_workbook(engine, tmp_path, xlsx_reader):
    path = workbook(tmp_path / "merged.xlsx", {"Roster": [
        ["Membership", None, None, "Contact", None],
        ["ID", "First", "Last", "Email", "Phone"],
        [1001, "Ada", "Lovelace", "ada@x.org", 5550101],
        [1002, "Grace", "Hopper", "g@x.org", "555-0102"],
    ]}, merged={"Roster": ["A1:C1", "D1:E1"]})
    result = engine(path)
    assert result.code == 0, result.stderr
    assert result.mapping() == {"member_id": "ID", "first_name": "First", "last_name": "Last",
                                "email": "Email", "phone": "Phone"}
    assert result.one("run.table.summary")["header_rows"] == [2]
    rows = result.csv("merged.table-1.csv")
    assert rows[1][:5] == ["1001", "Ada", "Lovelace", "ada@x.org", "5550101"], "numbers as ids and phones"


def test_two_tables_on_one_sheet_with_totals_and_notes(engine, tmp_path):
    path = write(tmp_path / "teams.csv",
                 "Seniors\nmemberId,firstName,lastName,emailAddress\n1,Ada,Lovelace,ada@x.org\n"
                 "2,Alan,Turing,alan@x.org\nTotal,2,,\n\n\nJuniors\nmember_id,first_name,last_name,email\n"
                 "10,Tim,Berners-Lee,tim@x.org\n11,Linus,Torvalds,linus@x.org\n\nNotes: juniors pay half.\n")
    result = engine(path)
    assert result.code == 0, result.stderr
    first, second = result.tables
    assert (first["header_row"], first["rows"], second["header_row"], second["rows"]) == (2, 2, 9, 2)
    assert first["skipped_rows"]["totals"] == 1
    assert second["skipped_rows"]["notes"] == 1
    assert result.mapping(0)["email"] == "emailAddress" and result.mapping(1)["email"] == "email"
    assert result.csv("teams.table-2.csv")[1][:4] == ["10", "Tim", "Berners-Lee", "tim@x.org"]
    book = openpyxl.load_workbook(os.path.join(result.out_dir, "teams.normalized.xlsx"))
    assert book.sheetnames == ["Table 1", "Table 2", "Issues"]


def test_repeated_page_headers_are_skipped(engine, tmp_path):
    path = write(tmp_path / "report.csv",
                 "Member ID,First,Last,,Phone\n1,Ada,Lovelace,ada@x.org,555-0101\n2,Bob,Smith,bob@x.org,555-0102\n"
                 "3,Cy,Young,cy@x.org,555-0103\nMember ID,First,Last,,Phone\n4,Di,Prince,di@x.org,555-0104\n")
    result = engine(path)
    table = result.one("run.table.summary")
    assert table["rows"] == 4 and table["skipped_rows"]["repeated_headers"] == 1
    email = next(c for c in table["columns"] if c["letter"] == "D")
    assert email["field"] == "email" and email["header"] == "" and email["value_score"] == 1.0, \
        "an unlabeled column of emails is mapped by its values"


def test_utf16_tab_separated_with_punctuated_headers(engine, tmp_path):
    path = write(tmp_path / "export.txt",
                 "\ufeffID\tFirst Name:\tSurname*\tE-mail (work)\tTel.\tDate Joined (YYYY-MM-DD)\n"
                 "7\tJosé\tMüller\tjm@x.de\t+49 30 1234567\t2020-05-01\n", encoding="utf-16-le")
    result = engine(path)
    assert result.code == 0, result.stderr
    assert result.mapping() == {"member_id": "ID", "first_name": "First Name:", "last_name": "Surname*",
                                "email": "E-mail (work)", "phone": "Tel.",
                                "joined_on": "Date Joined (YYYY-MM-DD)"}
    assert result.csv("export.table-1.csv")[1] == ["7", "José", "Müller", "jm@x.de", "+49-30-1234567",
                                                   "2020-05-01"]


def test_cp1252_semicolons_typos_and_excel_serials(engine, tmp_path):
    path = write(tmp_path / "legacy.csv",
                 "Given name;Family Name;Emial Adress;Telephone;Member Since\n"
                 "José;Müller;jm@x.de;030 1234567;43557\nRenée;Faïza;rf@x.fr;01 23 45 67 89;44000\n",
                 encoding="cp1252")
    result = engine(path)
    assert "cp1252" in result.stdout and "';'" in result.stdout
    assert result.mapping() == {"first_name": "Given name", "last_name": "Family Name", "email": "Emial Adress",
                                "phone": "Telephone", "joined_on": "Member Since"}
    rows = result.csv("legacy.table-1.csv")
    assert rows[1] == ["", "José", "Müller", "jm@x.de", "030-1234567", "2019-04-02"]
    assert rows[2][5] == "2020-06-18"


def test_utf8_with_bom_and_a_tie(engine, tmp_path):
    path = write(tmp_path / "bom.csv", "\ufeffMember ID,First Name,Last Name,Phone,Mobile\n"
                                       "1,Ada,Lovelace,555-0101,555-0199\n", encoding="utf-8")
    result = engine(path)
    table = result.one("run.table.summary")
    assert result.mapping()["member_id"] == "Member ID", "the BOM is not part of the first header"
    assert table["ties"] == [{"field": "phone", "chosen": "Phone", "chosen_score": 1.0, "rival": "Mobile",
                              "rival_score": 1.0}]
    assert "tie for phone" in result.stdout


def test_a_notes_sheet_in_front_of_the_data_sheet(engine, tmp_path, xlsx_reader):
    path = workbook(tmp_path / "book.xlsx", {
        "Read me": [["About this export"], ["Exported by the membership desk."], [],
                    ["Columns are described below."], ["ID: the member number"]],
        "Members": [["Club roster 2024"], [], ["Member #", "First Name", "Last Name", "Email", "Joined"],
                    [1001, "Ada", "Lovelace", "ada@x.org", datetime.datetime(2019, 4, 2)],
                    [1002, "Grace", "Hopper", "bad-email", 43600],
                    ["Total", 2]],
    })
    result = engine(path)
    assert result.code == 0, result.stderr
    assert f"read by {xlsx_reader}" in result.stdout
    table = result.one("run.table.summary")
    assert table["sheet"] == "Members" and table["header_row"] == 3 and table["rows"] == 2
    assert table["skipped_rows"]["totals"] == 1
    rows = result.csv("book.table-1.csv")
    assert rows[1] == ["1001", "Ada", "Lovelace", "ada@x.org", "", "2019-04-02"]
    assert rows[2][5] == "2019-05-15", "a date serial in a number cell"
    assert [i["code"] for i in result.issues] == ["invalid_email"]
    assert result.issues[0]["sheet"] == "Members" and result.issues[0]["cell"] == "D5"
    book = openpyxl.load_workbook(os.path.join(result.out_dir, "book.normalized.xlsx"))
    sheet = book["Table 1"]
    assert sheet["F2"].value == datetime.datetime(2019, 4, 2) and sheet["F2"].number_format == "yyyy-mm-dd"
    issues = list(book["Issues"].iter_rows(values_only=True))
    assert issues[1][:3] == ("Members", 1, 5) and issues[1][8] == "invalid_email"


def test_input_sheet_picks_sheets_and_a_missing_one_is_an_error(engine, tmp_path, xlsx_reader):
    rows = [["ID", "First", "Last"], [1, "Ada", "Lovelace"]]
    path = workbook(tmp_path / "two.xlsx", {"A": rows, "B": rows})
    assert [t["sheet"] for t in engine(path).tables] == ["A", "B"]
    assert [t["sheet"] for t in engine(path, args=["--input-sheet", "b"]).tables] == ["B"]
    missing = engine(path, args=["--input-sheet", "Nope"])
    assert missing.code == 1
    error = missing.one("run.error")
    assert error["code"] == "input_unreadable" and "'Nope'" in error["message"] and "'A'" in error["message"]


def test_a_workbook_without_its_extension_is_recognized(engine, tmp_path, xlsx_reader):
    path = workbook(tmp_path / "upload.xlsx", {"S": [["ID", "First", "Last"], [1, "Ada", "Lovelace"]]})
    renamed = tmp_path / "0190c0de-0000-7000-8000-000000000000.bin"
    os.rename(path, renamed)
    result = engine(renamed)
    assert result.code == 0 and result.tables[0]["rows"] == 1
    assert "0190c0de-0000-7000-8000-000000000000.normalized.xlsx" in result.outputs()


def test_unreadable_inputs_fail_with_input_unreadable(engine, tmp_path):
    ole = tmp_path / "old.xls"
    ole.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    pdf = tmp_path / "scan.csv"
    pdf.write_bytes(b"%PDF-1.4\n...")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 this is not a zip")
    for path, words in [(ole, ".xls"), (pdf, "PDF"), (broken, "cannot read workbook"),
                        (tmp_path / "missing.csv", "not found")]:
        result = engine(path)
        assert result.code == 1
        error = result.one("run.error")
        assert error["code"] == "input_unreadable" and words in error["message"], error
        assert result.outputs() == []


def test_an_empty_file_is_an_issue_not_an_error(engine, tmp_path):
    path = write(tmp_path / "empty.csv", "")
    result = engine(path)
    assert result.code == 0
    assert [i["code"] for i in result.issues] == ["no_table_found"]
    assert result.one("run.validation.summary")["warnings"] == 1


def test_undecodable_bytes_are_replaced_and_reported(engine, tmp_path):
    path = tmp_path / "mixed.csv"
    # Past the first MiB, which looked like UTF-8, comes a byte that is not.
    path.write_bytes(("ID,First,Last,Email\n" + "".join(f"{n},Ada,Lovelace,a{n}@x.org\n" for n in range(40000)))
                     .encode() + b"99999,Ren\x81e,X,r@x.org\n")
    result = engine(path)
    assert result.code == 0
    warning = next(i for i in result.issues if i["code"] == "undecodable_bytes")
    assert warning["message"].startswith("1 bytes could not be decoded as utf-8")
    assert result.csv("mixed.table-1.csv")[-1][1] == "Ren\ufffde"


def test_a_table_away_from_a1_and_a_hidden_sheet(engine, tmp_path, xlsx_reader):
    import openpyxl as opx

    book = opx.Workbook()
    sheet = book.active
    sheet.title = "Data"
    sheet["C3"], sheet["D3"], sheet["E3"] = "ID", "First", "Last"
    sheet["C4"], sheet["D4"], sheet["E4"] = 7, "Ada", "Lovelace"
    hidden = book.create_sheet("Lookup")
    hidden.append(["ID", "First", "Last"])
    hidden.append([1, "Hidden", "Row"])
    hidden.sheet_state = "hidden"
    path = tmp_path / "offset.xlsx"
    book.save(path)
    result = engine(path)
    table = result.one("run.table.summary")
    assert (table["sheet"], table["header_row"], table["first_row"]) == ("Data", 3, 4)
    assert table["mapped"]["member_id"]["letter"] == "C"
    assert result.csv("offset.table-1.csv")[1] == ["7", "Ada", "Lovelace", "", "", ""]
    assert [t["sheet"] for t in engine(path, args=["--input-sheet", "Lookup"]).tables] == ["Lookup"]
