"""fpgpt report on a small configuration: the files, and the numbers in report.json."""

import json

import pytest
from click.testing import CliRunner

from fpgpt.cli import main


def test_report_command_writes_the_report(tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", "--out", str(out), "--sizes", "gpt2",
                                  "--presets", "u280,dfx", "--prompt-len", "8", "--gen-len", "4",
                                  "--cards", "2", "--ttft-lens", "8", "--detail-model", "gpt2",
                                  "--gpus", "v100x4,v100x4:hf-eager,a100-80,h100"])
    assert r.exit_code == 0, r.output
    d = json.loads((out / "report.json").read_text())
    for f in ["README.md", "performance.md", "latency_vs_size.png", "tokens_per_joule.png",
              "roofline.png", "energy_split.png", "layer_timeline.png"] + d["plots"]:
        assert (out / f).stat().st_size > 0, f
    md = (out / "README.md").read_text()
    assert "DFX's published claims" in md and "calibration" in md
    head = d["headline"]
    assert head["model"] == "gpt2"
    kinds = {row["kind"] for row in head["rows"]}
    assert kinds == {"simulated", "model"}
    for c in head["comparisons"]:
        des = c["design"]
        for g in c["gpus"]:
            assert g["speedup"]["value"] == pytest.approx(g["ms_per_token"]["value"]
                                                          / des["ms_per_token"]["value"])
    for row in d["decode"]:
        e = row["energy"]
        # per-token energy = decode joules / tokens, and the split adds up to it
        tot = sum(v["value"] for v in e["decode"]["joules"].values())
        assert e["decode_j_per_token"]["value"] == pytest.approx(tot / (row["gen_len"] - 1))
        assert e["decode_avg_power_w"]["value"] == pytest.approx(tot / e["decode"]["seconds"])
        lo, hi = e["decode_tokens_per_j"]["lo"], e["decode_tokens_per_j"]["hi"]
        assert lo < e["decode_tokens_per_j"]["value"] < hi
        # no design decodes faster than its HBM floor
        assert row["ms_per_token"] >= row["floor_ms_per_token"]
    if d["multi_card"]["available"]:
        assert "scaling.png" in d["plots"]
        assert [s["cards"] for s in d["scaling"]] == [1, 2]
        two = [r for r in d["decode_multi"] if r["hw"] == "u280"][0]
        assert two["devices"] == 2 and two["energy"]["cards"] == 2
    else:
        assert "ONE card" in md or "one card" in md
    tl = d["timeline"]
    assert tl["events"] and all(0 <= e["start_us"] <= tl["layer_us"] for e in tl["events"])
    assert all(0 <= f <= 1.0 + 1e-9 for f in tl["busy_fraction"].values())
