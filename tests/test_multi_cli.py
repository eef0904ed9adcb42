"""The multi-card commands: compile/simulate/generate --devices N and fpgpt scale."""

import json

import pytest
from click.testing import CliRunner

from fpgpt.cli import main
from fpgpt.config import load_preset

RING_KEYS = {"devices", "link_bytes_per_token", "link_utilization", "ring_wait_share",
             "partner_wait_share", "hbm_floor_ms_per_token", "ttft_ms", "ms_per_token"}


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_compile_devices_writes_cards_and_manifest(tmp_path):
    out = tmp_path / "ring"
    r = run("compile", "--model", "micro", "--hw", "tiny", "--prompt-len", "5", "--devices", "2",
            "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["devices"] == 2 and [c["file"] for c in m["cards"]] == ["card0.fpx", "card1.fpx"]
    assert m["partition"]["heads"] == [[0, 1], [1, 1]]
    from fpgpt.isa import Program
    assert Program.load(out / "card1.fpx").meta["device"] == 1
    r = run("compile", "--model", "micro", "--hw", "tiny", "--prompt-len", "5", "--devices", "2",
            "-o", str(out))
    assert r.exit_code == 2 and "--force" in r.output


def test_simulate_and_generate_on_two_cards():
    r = run("simulate", "--model", "micro", "--hw", "tiny", "--prompt-len", "4", "--gen-len", "3",
            "--devices", "2", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert RING_KEYS <= set(d) and d["devices"] == 2 and len(d["ring_wait_share"]) == 2
    # each card's own events: its share of the MACs (card 0 holds 129 of the 257 vocabulary rows)
    macs = [c["events"]["prefill"]["mpu_macs"] for c in d["cards"]]
    assert macs[0] > macs[1] > 0 and set(d["cards"][0]["events"]) == {"prefill", "decode"}
    args = ["generate", "--model", "micro", "--hw", "tiny", "--prompt", "def f",
            "--max-new-tokens", "5", "--json"]
    one = json.loads(run(*args).output)
    two = json.loads(run(*args, "--devices", "2").output)
    assert two["tokens"] == one["tokens"] and two["devices"] == 2


def test_scale_json_and_plot(tmp_path):
    png = tmp_path / "s.png"
    r = run("scale", "--model", "micro", "--hw", "tiny", "--devices", "1,2", "--prompt-len", "4",
            "--gen-len", "3", "--json", "--plot", str(png))
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [x["devices"] for x in rows] == [1, 2]
    assert rows[0]["speedup"] == 1.0 and rows[1]["efficiency"] == pytest.approx(rows[1]["speedup"] / 2)
    assert all(x["ms_per_token"] >= x["hbm_floor_ms_per_token"] for x in rows)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, message", [
    (["simulate", "--model", "micro", "--hw", "tiny", "--devices", "0"], "positive integer"),
    (["simulate", "--model", "micro", "--hw", "tiny", "--prompt-len", "4", "--gen-len", "2",
      "--devices", "3"], "more than the 2 attention heads"),
    (["scale", "--model", "micro", "--hw", "tiny", "--devices", "1,-2"], "positive integer"),
    (["scale", "--model", "micro", "--hw", "tiny", "--devices", "1,x"], "comma-separated"),
    (["compile", "--model", "gpt2-xl", "--hw", "tiny", "--devices", "2", "-o", "unused"],
     "on 2 devices needs"),
])
def test_bad_input_one_line_exit_2(args, message):
    r = run(*args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) <= 2


def test_ring_without_links_exit_2(tmp_path):
    cfg = tmp_path / "nolinks.toml"
    load_preset("tiny").replace(**{"link.count": 0}).save(cfg)
    r = run("simulate", "--model", "micro", "--hw", str(cfg), "--prompt-len", "4", "--gen-len",
            "2", "--devices", "2")
    assert r.exit_code == 2 and "no links" in r.output


def test_trace_has_a_process_per_card_and_link_tracks(tmp_path):
    path = tmp_path / "t.json"
    r = run("simulate", "--model", "micro", "--hw", "tiny", "--prompt-len", "4", "--gen-len", "2",
            "--devices", "2", "--trace", str(path))
    assert r.exit_code == 0, r.output
    ev = json.loads(path.read_text())["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in ev if e.get("name") == "process_name"}
    assert names == {(0, "card 0"), (1, "card 1")}
    link = [e for e in ev if e.get("ph") == "X" and e.get("tid") == 10]
    assert {e["pid"] for e in link} == {0, 1} and all(e["args"]["bytes"] > 0 for e in link)
