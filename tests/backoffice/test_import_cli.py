"""`customers import FILE.csv`: existing customers from a spreadsheet (003), merged by phone number (002)."""
from __future__ import annotations

import codecs

from sqlalchemy import func, select

from cardstore.models import Card, Customer

KENJI = ["090-3333-4444", "山田 健二", "kenji@example.jp", "150-0001", "1111", "JCB", "active"]


def _count(terminal, model) -> int:
    with terminal.store.unit_of_work() as uow:
        return uow.session.scalar(select(func.count()).select_from(model))


def test_a_clean_file_imports_merges_rows_by_phone_number_and_reports(terminal, write_csv):
    """Kenji's two cards on two rows, his number written two ways, become one customer with two cards."""
    path = write_csv([KENJI, ["+81 90 3333 4444", "山田 健二", "", "1500001", "２２２２", "visa", "Inactive"]])
    out = terminal.ok("customers", "import", path, "--operator", "yamada")
    assert "rows read 2, imported 1, merged 1, unchanged 0, rejected 0" in out
    assert "encoding utf-8" in out
    shown = terminal.json("customers", "show", "09033334444")
    assert shown["customer"]["name"] == "山田 健二" and shown["customer"]["zip_code"] == "1500001"
    assert [(c["last4"], c["vendor"], c["status"]) for c in shown["cards"]] == [
        ("1111", "JCB", "active"), ("2222", "Visa", "inactive")]


def test_running_the_same_file_again_changes_nothing(terminal, write_csv):
    """Idempotent: the second run reports every row unchanged and adds no customer, card or per-customer row."""
    path = write_csv([KENJI, ["09000001111", "佐藤 花子", "hanako.sato@example.jp", "12345", "5555", "Visa", "active"]])
    terminal.ok("customers", "import", path, "--operator", "yamada")
    customers, cards = _count(terminal, Customer), _count(terminal, Card)
    out = terminal.ok("customers", "import", path, "--operator", "yamada")
    assert "imported 0, merged 0, unchanged 2, rejected 0" in out
    assert (_count(terminal, Customer), _count(terminal, Card)) == (customers, cards)
    actions = [e["action"] for e in terminal.audit("--actor", "yamada")]
    assert actions == ["import.completed", "import.completed", "customer.imported"]


def test_a_new_card_for_a_known_customer_is_merged_into_her_record(terminal, write_csv):
    """Hanako is already in the store: her new JCB joins her four cards; nothing else about her changes."""
    path = write_csv([["09000001111", "佐藤 花子", "", "12345", "7777", "JCB", "active"]])
    out = terminal.ok("customers", "import", path, "--operator", "yamada")
    assert "imported 0, merged 1" in out and "customers created 0, updated 0; cards added 1" in out
    assert [c["last4"] for c in terminal.json("customers", "show", "09000001111")["cards"]][-1] == "7777"
    [merged] = terminal.audit("--actor", "yamada", "--action", "customer.merged")
    assert merged["customer"] == "*********1111"
    assert merged["after"]["cards_added"] == [{"last4": "7777", "vendor": "JCB", "status": "active"}]


def test_bad_rows_are_reported_by_line_and_reason_and_the_good_rows_imported(terminal, write_csv):
    """A bad phone, three-digit last four, an unknown vendor, a bad status, a short row: each named by line;
    Kenji's good row is imported; the exit status says some rows were rejected."""
    path = write_csv([
        KENJI,
        ["12", "A", "", "12345", "1234", "Visa", "active"],
        ["09044445555", "B", "", "12345", "123", "Visa", "active"],
        ["09044445556", "C", "", "12345", "1234", "Discovery Card", "active"],
        ["09044445557", "D", "", "12345", "1234", "Visa", "frozen"],
        ["09044445558", "E", "", "12345"],
        ["09044445559", "F", "not-an-address", "12-", "12345678901234", "Visa", "active"],
    ])
    result = terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 3
    out = result.output
    assert "line 3: rejected: phone_number is not a phone number" in out
    assert "line 4: rejected: card_last4 must be exactly 4 digits, not 3" in out
    assert "line 5: rejected: card_vendor is not a known vendor" in out
    assert "line 6: rejected: card_status must be one of active, inactive, blocked" in out
    assert "line 7: rejected: has 4 fields, the header has 7" in out
    assert "line 8: rejected: email is not an e-mail address; zip_code must be" in out
    assert "12345678901234" not in out  # a value that may be a card number is never echoed
    assert "rows read 7, imported 1, merged 0, unchanged 0, rejected 6" in out
    assert _count(terminal, Customer) == 4


def test_a_file_without_a_required_column_is_refused_and_nothing_imported(terminal, write_csv):
    """No card_vendor column: refused before any row is read, naming the column."""
    header = ["phone_number", "name", "email", "zip_code", "card_last4", "card_status"]
    path = write_csv([["09033334444", "山田 健二", "", "150-0001", "1111", "active"]], header=header)
    result = terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 1 and "missing column(s): card_vendor" in result.output
    assert _count(terminal, Customer) == 3 and terminal.audit("--actor", "yamada") == []


def test_a_shift_jis_file_from_japanese_excel_imports_with_its_names_intact(terminal, write_csv):
    """Excel's 'CSV (comma delimited)' in Japan writes Shift_JIS (CP932): detected, said, names read right."""
    path = write_csv([KENJI, ["09055556666", "髙橋 ①子", "", "〒100-0001", "3333", "ＪＣＢ", "active"]],
                     encoding="cp932")
    out = terminal.ok("customers", "import", path, "--operator", "yamada")
    assert "encoding cp932 (detected)" in out and "imported 2" in out
    assert terminal.json("customers", "show", "09033334444")["customer"]["name"] == "山田 健二"
    assert terminal.json("customers", "show", "09055556666")["customer"]["name"] == "髙橋 ①子"


def test_a_utf8_file_with_a_bom_imports(sqlite_terminal, write_csv):
    """Excel's 'CSV UTF-8' starts with a BOM: the header is still recognised."""
    path = write_csv([KENJI], encoding="utf-8-sig")
    assert path.read_bytes().startswith(codecs.BOM_UTF8)
    out = sqlite_terminal.ok("customers", "import", path, "--operator", "yamada")
    assert "encoding utf-8-sig (detected from its BOM)" in out and "imported 1" in out


def test_a_file_in_another_encoding_is_refused_with_a_clear_message(sqlite_terminal, write_csv):
    """Latin-1 (a European export) is neither UTF-8 nor Shift_JIS text, even where its bytes happen to decode as
    Shift_JIS ("Béatrice" would read "B騁rice"): refused, nothing imported."""
    for name in ("Müller Jürgen", "Béatrice Dupont"):
        path = write_csv([["09033334444", name, "", "12345", "1111", "Visa", "active"]], encoding="latin-1")
        result = sqlite_terminal.run("customers", "import", path, "--operator", "yamada")
        assert result.exit_code == 1 and 'save it as "csv utf-8" or pass --encoding' in result.output.lower()
    assert _count(sqlite_terminal, Customer) == 3


def test_a_utf16_unicode_text_export_is_refused(sqlite_terminal, write_csv):
    """Excel's 'Unicode text' is UTF-16: refused with what to save instead."""
    path = write_csv([KENJI], encoding="utf-16")
    result = sqlite_terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 1 and "UTF-16" in result.output


def test_an_encoding_can_be_named_when_detection_cannot_tell(sqlite_terminal, write_csv):
    """--encoding cp932 reads the file as Shift_JIS without detection."""
    path = write_csv([KENJI], encoding="cp932")
    out = sqlite_terminal.ok("customers", "import", path, "--operator", "yamada", "--encoding", "cp932")
    assert "encoding cp932 (as given)" in out


def test_the_import_never_changes_a_cards_status(terminal, write_csv):
    """The file says Misaki's 1456 is active; the store says inactive: the row is refused, the card stays."""
    path = write_csv([["09012345041", "高橋 美咲", "", "12345", "1456", "Visa", "active"]])
    result = terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 3 and "card_status differs from the store's (inactive)" in result.output
    cards = {c["last4"]: c["status"] for c in terminal.json("customers", "show", "09012345041")["cards"]}
    assert cards["1456"] == "inactive"


def test_customer_fields_are_kept_unless_update_existing_is_asked_for(terminal, write_csv):
    """A new zip code for Ichiro is refused by default; with --update-existing it is applied and audited by field."""
    path = write_csv([["09000002222", "鈴木 一郎", "", "54321", "4444", "MasterCard", "active"]])
    refused = terminal.run("customers", "import", path, "--operator", "yamada")
    assert refused.exit_code == 3 and "zip_code differs from the store's" in refused.output
    assert terminal.json("customers", "show", "09000002222")["customer"]["zip_code"] == "12345"
    out = terminal.ok("customers", "import", path, "--operator", "yamada", "--update-existing")
    assert "customers created 0, updated 1" in out
    assert terminal.json("customers", "show", "09000002222")["customer"]["zip_code"] == "54321"
    [merged] = terminal.audit("--actor", "yamada", "--action", "customer.merged")
    assert merged["after"]["fields_updated"] == ["zip_code"] and "54321" not in str(merged)


def test_rows_of_one_number_that_disagree_are_reported(sqlite_terminal, write_csv):
    """Two rows for Kenji with different names: the second is refused, pointing at the first."""
    path = write_csv([KENJI, ["09033334444", "山田 謙二", "", "150-0001", "2222", "Visa", "active"]])
    result = sqlite_terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 3 and "line 3: rejected: name differs from line 2" in result.output


def test_a_deleted_customer_is_not_brought_back_by_an_import(terminal, write_csv):
    """Ichiro was deleted: his row is refused until he is purged."""
    terminal.ok("customers", "delete", "09000002222", "--operator", "yamada")
    path = write_csv([["09000002222", "鈴木 一郎", "", "12345", "5555", "Visa", "active"]])
    result = terminal.run("customers", "import", path, "--operator", "yamada")
    assert result.exit_code == 3 and "is deleted" in result.output


def test_a_dry_run_checks_against_the_store_and_changes_nothing(terminal, write_csv):
    """--dry-run reports what would happen, writes no customer and no audit row."""
    path = write_csv([KENJI])
    out = terminal.ok("customers", "import", path, "--operator", "yamada", "--dry-run")
    assert "dry run, nothing changed" in out and "imported 1" in out
    assert _count(terminal, Customer) == 3 and terminal.audit("--actor", "yamada") == []


def test_import_requires_an_operator(sqlite_terminal, write_csv):
    """An import is a change: without --operator it does not start."""
    result = sqlite_terminal.run("customers", "import", write_csv([KENJI]))
    assert result.exit_code == 2 and "--operator" in result.output
    assert _count(sqlite_terminal, Customer) == 3


def test_batches_do_not_split_a_customer(sqlite_terminal, write_csv):
    """With batches of one customer, 5 customers with 3 cards each still become 5 customers and 15 cards."""
    from backoffice.importer import import_csv

    rows = [[f"0906666000{i}", f"客 {i}", "", "12345", f"{i}00{j}", "Visa", "active"] for i in range(5) for j in range(3)]
    report = import_csv(sqlite_terminal.store, write_csv(rows).read_bytes(), operator="yamada", region="JP",
                        batch_customers=1)
    assert (report.customers_created, report.cards_added, report.imported, report.merged) == (5, 15, 5, 10)
