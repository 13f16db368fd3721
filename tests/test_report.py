"""experiment/report.py and aggregate.py: the paper's Table 3 and the tables beside it."""
import json

from scripts import aggregate
from experiment import report
from experiment.config import Config

PAPER = [  # the paper's Table 3, test accuracy in %, as printed ("-": not given)
    ("Baseline_digit", "12.44", "95.07"),
    ("Baseline_texture", "12.05", "96.44"),
    ("iCE fi-RevNet", "40.01", "-"),
    ("Ours_digit", "54.54", "40.41"),
    ("Ours_texture", "31.78", "69.00"),
]
# The rows of our tables: the paper's, its iCE row as our two, each beside the paper's number.
TABLE = PAPER[:2] + [("iCE_fi-RevNet_digit", "40.01", "-"),
                     ("iCE_fi-RevNet_texture", "40.01", "-")] + PAPER[3:]


def table_rows(markdown):
    """The body rows of a markdown table, as lists of stripped cells."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_paper_table3_holds_the_printed_numbers():
    assert list(report.PAPER_TABLE3) == [name for name, _, _ in PAPER]
    assert report.PAPER_ROW_ORDER == tuple(name for name, _, _ in PAPER)
    assert report.PAPER_TABLE3["Baseline_digit"] == {"digit": 12.44, "texture": 95.07}
    assert report.PAPER_TABLE3["Baseline_texture"] == {"digit": 12.05, "texture": 96.44}
    assert report.PAPER_TABLE3["iCE fi-RevNet"] == {"digit": 40.01, "texture": None}
    assert report.PAPER_TABLE3["Ours_digit"] == {"digit": 54.54, "texture": 40.41}
    assert report.PAPER_TABLE3["Ours_texture"] == {"digit": 31.78, "texture": 69.00}
    for name, digit, texture in PAPER:
        assert (report.paper_cell(name, "digit"), report.paper_cell(name, "texture")) == \
            (digit, texture)


def test_paper_note_is_one_sentence_without_approximate():
    note = report.paper_note()
    assert note.endswith(".") and note.count(". ") == 0
    assert "approx" not in note and "~" not in note


def fake_report(method, digit, texture):
    rows = {which: {"epoch": e, "val_digit_acc": 0.5, "val_texture_acc": 0.25,
                    "test_digit_acc": d, "test_texture_acc": texture}
            for which, e, d in (("best_digit", 1, digit), ("best_texture", 7, digit / 2))}
    return {"method": method, "rows": rows}


def test_run_table_has_the_paper_rows_and_dashes_where_not_run():
    rows = table_rows(report.run_table_markdown(fake_report("baseline", 0.1812, 0.8646)))
    assert [r[0] for r in rows] == [name for name, _, _ in TABLE]
    assert [(r[-2], r[-1]) for r in rows] == [(d, t) for _, d, t in TABLE]
    assert rows[0][1:6] == ["1", "50.0", "25.0", "18.1", "86.5"]      # ours: one decimal
    assert rows[1][1:6] == ["7", "50.0", "25.0", "9.1", "86.5"]
    for row in rows[2:]:
        assert row[1:6] == ["-"] * 5


def test_aggregate_markdown_has_the_paper_rows_in_order():
    rows = table_rows(report.aggregate_markdown(report.aggregate(
        [fake_report("ifm", 0.40, 0.60), fake_report("ifm", 0.50, 0.40)])))
    assert [r[0] for r in rows] == [name for name, _, _ in TABLE]
    assert [(r[-3], r[-2]) for r in rows] == [(d, t) for _, d, t in TABLE]
    assert [r[-1] for r in rows] == ["-"] * 6           # no settings given: no configuration
    assert rows[4][1:4] == ["2", "45.0 ± 7.1", "50.0 ± 14.1"]
    assert rows[5][1:4] == ["2", "22.5 ± 3.5", "50.0 ± 14.1"]
    for row in rows[:4]:
        assert row[1:4] == ["-"] * 3


def test_ice_runs_fill_the_ice_rows_beside_the_papers_number():
    table = report.aggregate([fake_report("ice-firevnet", 0.30, 0.60)])
    assert set(table) == {"iCE_fi-RevNet_digit", "iCE_fi-RevNet_texture"}
    rows = table_rows(report.aggregate_markdown(table))
    assert rows[2] == ["iCE_fi-RevNet_digit", "1", "30.0", "60.0", "40.01", "-", "-"]
    assert rows[3] == ["iCE_fi-RevNet_texture", "1", "15.0", "60.0", "40.01", "-", "-"]
    run_rows = table_rows(report.run_table_markdown(fake_report("ice-firevnet", 0.30, 0.60)))
    assert run_rows[2][0] == "iCE_fi-RevNet_digit" and run_rows[2][4:] == [
        "30.0", "60.0", "40.01", "-"]


def test_rows_name_their_configuration():
    settings = [{"method": "ice-firevnet", "epochs": 3, "flow_depth": 1, "ice_beta": 0.05,
                 "limit_train": 16000},
                {"ifm": True, "epochs": 10, "lam": 30.0, "samples": 64},     # an old run
                {"ifm": True, "epochs": 10, "lam": 1.0, "samples": 64},
                {"ifm": True, "epochs": 1, "lam": 30.0, "samples": 64, "estimator": "dv"}]
    reports = [fake_report("ice-firevnet", 0.3, 0.6), fake_report("ifm", 0.4, 0.6),
               fake_report("ifm", 0.5, 0.4), fake_report("ifm", 0.3, 0.5)]
    rows = report.aggregate(reports, [Config.from_json(s) for s in settings])
    assert rows["iCE_fi-RevNet_digit"]["configuration"] == (
        "3 epochs, flow depth 1, beta 0.05, 16000 training images")
    assert rows["Ours_digit"]["configuration"] == (     # mixed: each named; the estimator
        "1 epoch, lambda 30, K 64, DV; 10 epochs, lambda 1, K 64; "   # where it is not JSD
        "10 epochs, lambda 30, K 64")


def test_aggregate_py_prints_and_writes_the_paper_rows(tmp_path, capsys):
    for name, method, digit in (("a", "baseline", 0.2), ("b", "ifm", 0.4)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(fake_report(method, digit, 0.5)))
    out_json, out_md = tmp_path / "t.json", tmp_path / "t.md"
    assert aggregate.main([str(tmp_path / "a"), str(tmp_path / "b"), "--json", str(out_json),
                           "--md", str(out_md)]) == 0
    printed = capsys.readouterr().out
    assert printed == out_md.read_text()
    rows = table_rows(printed)
    assert [r[0] for r in rows] == [name for name, _, _ in TABLE]
    assert rows[0][1:] == ["1", "20.0", "50.0", "12.44", "95.07", "-"]
    assert rows[2][1:] == rows[3][1:] == ["-", "-", "-", "40.01", "-", "-"]
    table = json.loads(out_json.read_text())
    assert list(table["paper_percent"]) == [name for name, _, _ in PAPER]
    assert table["paper_percent"]["iCE fi-RevNet"] == {"digit": 40.01, "texture": None}
    assert set(table["rows"]) == {"Baseline_digit", "Baseline_texture", "Ours_digit",
                                  "Ours_texture"}              # our rows: only those run
