"""A streaming XLSX writer: inline strings, real numbers, dates and booleans.

Rows go straight into the zip as they come (memory stays flat). A sheet
stops taking rows at Excel's row limit or near the 4 GiB zip limit; the
caller is told (`write_row` returns False) and reports it.
"""

import datetime as _dt

from .zipstream import EntryTooLarge, ZipStream

MAX_ROWS = 1_048_576
MAX_TEXT = 32767
_DATE_CELLS = 50_000  # cells of distinct dates kept per sheet (about 150 years of days)
_EPOCH = _dt.datetime(1899, 12, 30)
_EPOCH_DATE = _EPOCH.date()
_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)}
_CONTROL.update({0xFFFE: None, 0xFFFF: None})
_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<styleSheet {_NS}><numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '</styleSheet>'
)


def escape(text: str) -> str:
    """XML-escaped text without characters XML cannot hold, cut to Excel's cell limit."""
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
    if not text.isprintable():
        text = text.translate(_CONTROL)
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _cell(value) -> str:
    kind = type(value)
    if kind is str:
        if not value:
            return "<c/>"
        return '<c t="inlineStr"><is><t>' + escape(value) + "</t></is></c>"
    if value is None:
        return "<c/>"
    if kind is bool:
        return '<c t="b"><v>' + ("1" if value else "0") + "</v></c>"
    if kind is int:
        return "<c><v>" + str(value) + "</v></c>" if abs(value) < 1e15 else _cell(str(value))
    if kind is float:
        return "<c><v>" + repr(value) + "</v></c>" if value == value and abs(value) != float("inf") \
            else _cell(repr(value))
    if kind is _dt.date:
        return '<c s="1"><v>' + str((value - _EPOCH_DATE).days) + "</v></c>"
    if kind is _dt.datetime:
        if value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        delta = value - _EPOCH
        return '<c s="2"><v>' + repr(delta.days + delta.seconds / 86400) + "</v></c>"
    return _cell(str(value))


class SheetWriter:
    """Rows of one worksheet, streamed into the archive."""

    def __init__(self, book: "XlsxWriter", title: str, header: list[str]):
        self.book = book
        self.title = title
        self.rows = 0
        self.full = False
        self._buffer: list[str] = []
        self._dates: dict = {}
        self._entry = book.zip.open(f"xl/worksheets/sheet{len(book.titles) + 1}.xml")
        self._entry.write(
            ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
             f'<worksheet {_NS}><sheetViews><sheetView workbookViewId="0">'
             '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
             '</sheetView></sheetViews><sheetData>').encode())
        self._buffer.append('<row>' + "".join(
            '<c t="inlineStr" s="3"><is><t>' + escape(h) + "</t></is></c>" for h in header) + "</row>")
        self.rows = 1

    def write_row(self, values) -> bool:
        """Append a row; False once the sheet is full (row or size limit)."""
        if self.full:
            return False
        if self.rows >= MAX_ROWS:
            self.full = True
            return False
        cells = []
        dates = self._dates
        for value in values:
            if type(value) is str:
                if not value:
                    cells.append("<c/>")
                    continue
                if "&" in value or "<" in value or ">" in value or len(value) > MAX_TEXT \
                        or not value.isprintable():
                    value = escape(value)
                cells.append('<c t="inlineStr"><is><t>' + value + "</t></is></c>")
            elif value is None:
                cells.append("<c/>")
            elif type(value) is _dt.date:
                # Dates repeat (and their serial costs a subtraction); their cells are kept.
                cell = dates.get(value)
                if cell is None:
                    cell = _cell(value)
                    if len(dates) < _DATE_CELLS:
                        dates[value] = cell
                cells.append(cell)
            else:
                cells.append(_cell(value))
        self._buffer.append("<row>" + "".join(cells) + "</row>")
        self.rows += 1
        if len(self._buffer) >= 512:
            return self._flush()
        return True

    def _flush(self) -> bool:
        try:
            self._entry.write("".join(self._buffer).encode("utf-8", "replace"))
        except EntryTooLarge:
            self.full = True
            return False
        finally:
            self._buffer.clear()
        return True

    def close(self) -> None:
        """End the worksheet."""
        self._flush()
        self._entry.write(b"</sheetData></worksheet>")
        self._entry.close()
        self.book.titles.append(self.title)


class XlsxWriter:
    """A workbook written sheet after sheet to a binary file."""

    def __init__(self, handle):
        self.zip = ZipStream(handle)
        self.titles: list[str] = []

    def sheet(self, title: str, header: list[str]) -> SheetWriter:
        """Start the next sheet (close the previous one first)."""
        return SheetWriter(self, title, header)

    def close(self) -> None:
        """Write the workbook parts and the zip directory."""
        titles = self.titles or []
        if not titles:
            empty = self.sheet("Sheet1", [])
            empty.close()
            titles = self.titles
        sheets = "".join(f'<sheet name="{escape(t)}" sheetId="{i}" r:id="rId{i}"/>'
                         for i, t in enumerate(titles, 1))
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, len(titles) + 1))
        styles_id = len(titles) + 1
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, len(titles) + 1))
        head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        self.zip.add("xl/workbook.xml", (
            f'{head}<workbook {_NS} xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>').encode())
        self.zip.add("xl/_rels/workbook.xml.rels", (
            f'{head}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'{rels}<Relationship Id="rId{styles_id}" Type="{_REL}/styles" Target="styles.xml"/>'
            '</Relationships>').encode())
        self.zip.add("xl/styles.xml", _STYLES.encode())
        self.zip.add("_rels/.rels", (
            f'{head}<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
            '</Relationships>').encode())
        self.zip.add("[Content_Types].xml", (
            f'{head}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            f'{overrides}</Types>').encode())
        self.zip.close()
