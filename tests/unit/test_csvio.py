"""Reading the files keepers bring: Excel's UTF-8 with a BOM, or GB18030 from a Chinese Windows."""

from emsupply.csvio import decode

ROW = "code,name,name_zh\nRJ-T01,Rongjiang T01,古州镇应急物资储备中心\n"


def test_utf8_with_or_without_excels_bom():
    assert decode(ROW.encode("utf-8")) == (ROW, "UTF-8")
    assert decode(b"\xef\xbb\xbf" + ROW.encode("utf-8")) == (ROW, "UTF-8 with BOM")


def test_gb18030_as_excel_saves_csv_on_a_chinese_windows():
    raw = ROW.encode("gb18030")
    assert raw != ROW.encode("utf-8")
    assert decode(raw) == (ROW, "GB18030")
