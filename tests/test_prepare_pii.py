"""PII masking: typed placeholders; checksum-invalid IDs and Luhn-invalid cards are left alone."""

from tunesmith.data.pii import PiiMasker, luhn_ok, valid_cn_id

ALL = ["email", "phone", "id_card", "bank_card", "ip", "name_en", "name_zh"]


def test_checksums():
    assert valid_cn_id("11010519491231002X")
    assert not valid_cn_id("110105194912310021")  # wrong check digit
    assert not valid_cn_id("110105194913310028")  # month 13
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")


def test_masks_each_type_with_typed_placeholders():
    m = PiiMasker(ALL)
    out = m.mask("Mail john.doe@example.com, call +44 20 7946 0958 or 13812345678, "
                 "ID 11010519491231002X, card 4111-1111-1111-1111, host 10.0.0.1 / 2001:db8::1")
    assert out == ("Mail [EMAIL], call [PHONE] or [PHONE], ID [ID_CARD], card [BANK_CARD], host [IP] / [IP]")
    assert m.counts == {"email": 1, "phone": 2, "id_card": 1, "bank_card": 1, "ip": 2}


def test_wrong_checksum_id_and_luhn_invalid_card_are_not_masked():
    m = PiiMasker(ALL)
    text = "ID 110105194912310021 and card 4111 1111 1111 1112 and version 1.2.3.4.5 and 999.1.1.1"
    assert m.mask(text) == text
    assert sum(m.counts.values()) == 0


def test_email_next_to_chinese_text():
    m = PiiMasker(["email", "phone"])
    assert m.mask("电话13812345678和邮件aman.ayaz44@gmail.com联系") == "电话[PHONE]和邮件[EMAIL]联系"


def test_names_english_list_and_chinese_pos():
    m = PiiMasker(["name_en", "name_zh"], placeholder="<{type}>")
    assert m.mask("John Smith met Alice in Paris; they will meet in May.") == "<NAME> met <NAME> in Paris; they will meet in May."
    assert m.mask("张伟在北京开会") == "<NAME>在北京开会"
    assert m.counts == {"name_en": 2, "name_zh": 1}


def test_custom_name_list_only():
    m = PiiMasker(["name_en"], names={"Zorblax"})
    assert m.mask("Zorblax and John") == "[NAME] and John"
