"""Chinese first (issue 9, item 4): every message the code marks has its Chinese in the gettext
catalogue, the compiled catalogue is the one in the tree, and text said in parts (a plan's reason)
survives its JSON form and is said again in either language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from shared import i18n
from shared.i18n import _, join

ROOT = Path(__file__).parents[2]
PO = i18n.TRANSLATIONS / "zh" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdrf]")


def marked() -> set[str]:
    found = set()
    for package in ("shared", "inventory_svc", "allocation_svc", "gateway", "emsupply"):
        for _file, _line, message, _comments, _context in extract_from_dir(
                ROOT / package, method_map=[("**.py", "python")], keywords={"_": None}):
            found.add(message)
    return found


def catalogue():
    with PO.open("rb") as f:
        return read_po(f, locale="zh")


def test_every_marked_message_has_its_chinese_with_the_same_placeholders():
    po = catalogue()
    messages = marked()
    assert len(messages) > 80
    missing = sorted(m for m in messages if m not in po or not po[m].string)
    assert missing == [], "run `make translations` and translate these"
    for message in messages:
        said = po[message].string
        assert sorted(PLACEHOLDER.findall(said)) == sorted(PLACEHOLDER.findall(message)), message
        assert re.search(r"[\u4e00-\u9fff\uff08\uff1a]", said), f"{message!r}: {said!r}"


def test_the_compiled_catalogue_is_the_catalogue():
    with MO.open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    assert compiled == {m.id: m.string for m in catalogue() if m.id}


def test_text_in_parts_survives_its_json_form_and_is_said_in_either_language():
    minutes = _("%(minutes).0f min", minutes=42.4)
    reason = join([_("%(tier)s tier: ", tier=_("own county depot")),
                   _("nearest depot with %(item)s in stock (%(minutes)s)", item="TENT",
                     minutes=minutes)])
    assert reason == "own county depot tier: nearest depot with TENT in stock (42 min)"
    again = i18n.load(i18n.dump(reason))
    assert again == reason
    assert i18n.localize(again, "zh") == "本县县级库梯队：有 TENT 库存的最近仓库（42 分钟）"
    assert i18n.localize(again, "en") == reason
    assert i18n.localize("Missing data for required field.", "zh") == "缺少必填字段。"
    assert i18n.localize("no such message", "zh") == "no such message"


@pytest.mark.parametrize(("given", "language"), [("zh_CN.UTF-8", "zh"), ("en", "en"),
                                                 ("zh-Hans", "zh"), ("EN_GB", "en")])
def test_the_cli_takes_a_language_or_a_locale(given, language):
    assert i18n.parse_language(given) == language


def test_an_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        i18n.parse_language("fr")
