"""The console's files, without a browser: both catalogues name the same keys and every word the
console shows; nothing is fetched from another host; `emsupply token create --link/--qr` makes
the sign-in link (and its QR code)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from allocation_svc import lifecycle, roadtable, vocabulary
from allocation_svc.solver import UNMET_REASONS
from emsupply.token_commands import token
from inventory_svc import vocabulary as inventory_words
from shared.auth import TOKEN_ROLES

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "console" / "static"
OWN = [STATIC / "console.html", STATIC / "console.css", *sorted((STATIC / "js").glob("*.js"))]


def catalogue(lang: str) -> dict[str, str]:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def test_both_catalogues_have_every_key_and_no_empty_label():
    zh, en = catalogue("zh"), catalogue("en")
    assert sorted(zh) == sorted(en)
    assert all(v.strip() for v in [*zh.values(), *en.values()])
    assert re.search(r"[\u4e00-\u9fff]", zh["app_title"])


def test_every_word_the_console_shows_is_in_the_catalogue():
    zh = catalogue("zh")
    source = "\n".join(path.read_text(encoding="utf-8") for path in OWN)
    used = set(re.findall(r"""\bt\(\s*["']([\w.-]+)["']""", source))
    used |= set(re.findall(r'data-i18n(?:-label|-ph)?="([\w.-]+)"', source))
    for prefix in re.findall(r"t\(`(\w+_)\$\{", source):
        assert any(key.startswith(prefix) for key in zh), prefix
    vocab = {
        "role": TOKEN_ROLES,
        "level": inventory_words.LEVELS,
        "status": inventory_words.WAREHOUSE_STATUSES,
        "kind": inventory_words.MOVEMENT_KINDS,
        "road_class": roadtable.CLASS_SPEED_KMH,
        "road_status": roadtable.STATUS_CODES,
        "incident_type": vocabulary.INCIDENT_TYPES,
        "plan_status": lifecycle.STATUSES,
        "unmet": UNMET_REASONS,
        "policy": vocabulary.POLICIES,
        "do": ("receipt", "issue", "transfer", "count"),
    }
    for prefix, words in vocab.items():
        used |= {f"{prefix}_{word}" for word in words}
    assert sorted(used - set(zh)) == []


def test_nothing_is_fetched_from_another_host():
    for path in OWN:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert "@import" not in text and "url(http" not in text
    html = (STATIC / "console.html").read_text(encoding="utf-8")
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("/console/", "#")), ref
    leaflet = next((STATIC / "vendor").glob("leaflet-*"))
    assert (leaflet / "LICENSE").exists() and (leaflet / "leaflet.js").exists()


def test_token_create_prints_a_sign_in_link_and_its_qr_code(tmp_path):
    runner = CliRunner()
    plain = runner.invoke(token, ["create", "--role", "viewer", "--data-dir", str(tmp_path)])
    assert plain.exit_code == 0, plain.output
    assert re.fullmatch(r"\S+\n", plain.output)  # the bare token, nothing else
    link = runner.invoke(token, ["create", "--role", "keeper", "--warehouse", "KL", "--link",
                                 "--url", "http://192.0.2.10:8000/", "--data-dir",
                                 str(tmp_path)])
    assert link.exit_code == 0, link.output
    assert re.fullmatch(r"http://192\.0\.2\.10:8000/#token=\S+\n", link.output)
    qr = runner.invoke(token, ["create", "--role", "keeper", "--warehouse", "KL", "--qr",
                               "--url", "http://192.0.2.10:8000", "--data-dir", str(tmp_path)])
    assert qr.exit_code == 0, qr.output
    first, *drawing = qr.output.splitlines()
    assert first.startswith("http://192.0.2.10:8000/#token=")
    assert len(drawing) > 10 and set("".join(drawing)) <= set("█▀▄ ")
    bad = runner.invoke(token, ["create", "--role", "viewer", "--link", "--url", "phone",
                                "--data-dir", str(tmp_path)])
    assert bad.exit_code != 0 and "--url" in bad.output
