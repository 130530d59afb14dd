"""The findings registry: verdicts come from the measurement, ids are checked, JSON is written."""
import json

import pytest

from helpers import config, findings


@pytest.fixture(autouse=True)
def tmp_findings(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_FINDINGS_DIR", str(tmp_path / "findings"))
    monkeypatch.setenv("BOOK_PROFILE", "quick")
    findings.start_chapter("99_test")
    return tmp_path / "findings"


def rule(m):
    return m["ratio"] <= 0.7


def test_verdict_follows_measurement():
    good = findings.record("F-TEST", "000 Sec. 1", "ratio <= 0.7", {"ratio": 0.5}, rule, show=False)
    bad = findings.record("F-TEST", "000 Sec. 1", "ratio <= 0.7", {"ratio": 0.9}, rule, show=False)
    assert good.verdict == findings.REPRODUCED and good.reproduced
    assert bad.verdict == findings.NOT_REPRODUCED and not bad.reproduced
    assert findings.get("F-TEST") is bad  # the later record replaces the earlier one
    scalar = findings.record("F-SCALAR", "src", "x > 1", 2.0, lambda x: x > 1, show=False)
    assert scalar.reproduced and scalar.measured == {"value": 2.0}


def test_numpy_measurements_and_bool():
    import numpy as np

    f = findings.record("F-NP", "src", "all positive", {"v": np.array([1.0, 2.0]), "n": np.int64(3)},
                        lambda m: np.all(np.asarray(m["v"]) > 0), show=False)
    assert f.reproduced and f.measured == {"v": [1.0, 2.0], "n": 3}


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="F-OUT"):
        findings.record("I-PARAMS", "src", "c", 1.0, lambda m: True)
    with pytest.raises(ValueError):
        findings.record("", "src", "c", 1.0, lambda m: True)
    with pytest.raises(TypeError, match="function"):
        findings.record("F-X", "src", "c", 1.0, True)
    with pytest.raises(TypeError, match="bool"):
        findings.record("F-X", "src", "c", 1.0, lambda m: "yes")
    with pytest.raises(KeyError, match="no finding"):
        findings.get("F-NONE")


def test_json_written_and_table(tmp_findings):
    findings.record("F-A", "000 Sec. 7.2", "ratio <= 0.7", {"ratio": 0.25}, rule, note="small", show=False)
    findings.record("F-B", "004 Sec. 5", "ratio <= 0.7", {"ratio": 3.0}, rule, show=False)
    path = tmp_findings / "quick" / "99_test.json"
    payload = json.loads(path.read_text())
    assert payload["chapter"] == "99_test" and payload["profile"] == "quick"
    assert [f["verdict"] for f in payload["findings"]] == [findings.REPRODUCED, findings.NOT_REPRODUCED]
    assert payload["findings"][0]["measured"] == {"ratio": 0.25}
    text = findings.markdown_table()
    assert "| F-A | Haink 2023a, Sec. 7.2 | ratio <= 0.7 | ratio = 0.25 | reproduced |" in text
    assert payload["findings"][0]["source"] == "000 Sec. 7.2"  # the record keeps the source as written
    assert findings.load_all(tmp_findings)[0]["chapter"] == "99_test"
    assert not list((tmp_findings / "quick").glob("*.tmp"))


def test_record_needs_a_chapter(monkeypatch):
    monkeypatch.setitem(findings._state, "chapter", None)
    with pytest.raises(RuntimeError, match="setup"):
        findings.record("F-X", "src", "c", 1.0, lambda m: True)


def test_table_renders_html_and_markdown():
    from helpers import plotting

    findings.record("F-A", "000 Sec. 7.2", "ratio <= 0.7", {"ratio": 0.25}, rule, show=False)
    assert findings.table() is None  # displayed, not returned: a cell ending with it shows it once
    assert "| F-A |" in findings.markdown_table()
    t = plotting.show_table(["a", "b"], [["x<y", 1]])
    assert "<td>x&lt;y</td>" in t._repr_html_() and "| x<y | 1 |" in t._repr_markdown_()
    with pytest.raises(ValueError):
        plotting.show_table(["a", "b"], [[1]])


def test_table_adds_the_recorded_verdicts_per_seed(tmp_path, monkeypatch, capsys):
    from helpers import plotting

    record = tmp_path / "robustness.json"
    record.write_text(json.dumps({
        "seeds": [0, 1, 2],
        "table": {"99_test": {"F-A": {"0": {"verdict": findings.REPRODUCED, "figure": "ratio = 0.2"},
                                      "1": {"verdict": findings.NOT_REPRODUCED, "figure": "ratio = 0.9"}}}},
        "runs": {"99_test seed 0": {"commit": "abc1234", "date": "2026-12-02 22:00 UTC", "load": 1.0}}}))
    seeds, by_seed, provenance = findings.seed_verdicts("99_test", record)
    assert seeds == ["0", "1", "2"] and by_seed["F-A"] == ["yes", "no", "not run"]
    assert provenance == "commit abc1234, 2026-12-02"
    assert findings.seed_verdicts("98_other", record) == ([], {}, "")
    assert findings.seed_verdicts("99_test", tmp_path / "missing.json") == ([], {}, "")
    shown = []
    monkeypatch.setattr(plotting, "show_table", lambda header, rows: shown.append((header, rows)))
    monkeypatch.setattr(findings, "ROBUSTNESS_RECORD", record)
    findings.record("F-A", "000", "ratio <= 0.7", {"ratio": 0.25}, rule, show=False)
    findings.record("F-B", "000", "ratio <= 0.7", {"ratio": 0.25}, rule, show=False)
    findings.table()
    header, rows = shown[-1]
    assert header[-1] == "verdicts at BOOK_SEED = 0, 1, 2 (recorded)"
    # a finding whose verdict flips shows its key figure at every seed
    assert rows[0][-1] == "yes / no / not run (ratio = 0.2 / 0.9 / not run)"
    assert rows[1][-1] == "not run / not run / not run"
    assert findings.seed_figures("99_test", record) == {"F-A": "ratio = 0.2 / 0.9 / not run"}
    assert findings.seed_figures("99_test", tmp_path / "missing.json") == {}
    assert "commit abc1234" in capsys.readouterr().out
    monkeypatch.setenv("BOOK_PROFILE", "paper")  # the record is of the quick profile: no column
    findings.table()
    assert shown[-1][0][-1] == "verdict"


def test_seed_measurements_reads_the_record_not_the_prose(tmp_path):
    record = tmp_path / "robustness.json"
    cell = lambda v, x: {"verdict": v, "figure": f"x = {x}", "measured": {"x": x, "per layer": [1, x]}}
    record.write_text(json.dumps({
        "seeds": [0, 1],
        "table": {"99_test": {"F-A": {"0": cell(findings.REPRODUCED, 0.123456),
                                      "1": {"verdict": findings.NOT_REPRODUCED, "figure": "x = 2"}}}},
        "runs": {"99_test seed 0": {"commit": "abc1234", "date": "2026-12-02 22:00 UTC", "load": 1.0}}}))
    text = findings.seed_measurements("99_test", {"F-A": ["x", "per layer"]}, record)
    lines = text.splitlines()
    assert lines[0] == "| finding | quantity | seed 0 | seed 1 |"
    assert lines[2] == f"| F\u2011A | verdict | {findings.REPRODUCED} | {findings.NOT_REPRODUCED} |"
    # numbers rounded as in the findings table; a run recorded without its measurements says so
    assert lines[3] == "| | x | 0.1235 | not recorded |"
    assert lines[4] == "| | per layer | [1, 0.1235] | not recorded |"
    assert "commit abc1234, 2026-12-02" in text
    assert "no runs of `98_other`" in findings.seed_measurements("98_other", {"F-A": ["x"]}, record)
    with pytest.raises(ValueError, match="finding ids"):
        findings.seed_measurements("99_test", {}, record)
    with pytest.raises(ValueError, match=r"no measured quantity \['y'\]"):  # a misspelt name
        findings.seed_measurements("99_test", {"F-A": ["x", "y"]}, record)
