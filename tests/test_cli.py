"""The fpgpt command: JSON for programs, one-line errors with exit code 2, nothing overwritten."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from fpgpt.cli import main

SIMULATE_KEYS = {"model", "hw", "devices", "clock_mhz", "prompt_len", "gen_len", "ttft_ms",
                 "ms_per_token", "tokens_per_s", "total_ms", "hbm_bytes_per_token",
                 "hbm_bw_utilization", "unit_utilization", "cycles"}


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_hw_list_and_show_json():
    r = run("hw", "list", "--json")
    assert r.exit_code == 0
    assert {p["name"] for p in json.loads(r.output)} >= {"u280", "dfx", "u55c", "tiny"}
    r = run("hw", "show", "u280", "--json")
    d = json.loads(r.output)
    assert d["hbm"]["channels"] == 32 and d["derived"]["hbm_peak_gb_per_s"] == pytest.approx(
        min(460.0, 32 * 64 * d["clock_mhz"] / 1e3))
    assert d["sources"]["hbm.channel_gbps"].startswith("UG1393")


def test_hw_save_then_use_the_file(tmp_path):
    p = tmp_path / "mine.toml"
    assert run("hw", "save", "tiny", "-o", str(p)).exit_code == 0
    r = run("hw", "show", str(p), "--json")
    assert json.loads(r.output)["name"] == "tiny"
    r = run("hw", "save", "tiny", "-o", str(p))
    assert r.exit_code == 2 and "--force" in r.output


@pytest.mark.parametrize("args, message", [
    (["hw", "show", "u250"], "unknown hardware preset 'u250'; known presets: dfx, tiny, u280, u55c"),
    (["simulate", "--model", "gpt3", "--hw", "u280"], "unknown model 'gpt3'"),
    (["simulate", "--model", "gpt2", "--hw", "u280", "--prompt-len", "1000", "--gen-len", "100"],
     "has a context of 1024"),
    (["simulate", "--model", "gpt2-xl", "--hw", "tiny", "--prompt-len", "8", "--gen-len", "2"],
     "HBM"),
    (["generate", "--model", "gpt2-medium", "--prompt", "hi"], "no weights here"),
    (["disasm", "does-not-exist.bin"], "does-not-exist.bin: no such file"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fpgpt: error: "), r.output
    assert message in lines[0]
    assert "Traceback" not in r.output


def test_asm_disasm_round_trip(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("""; count down
    SETI rd=r3, imm=2
top:
    ADDI rd=r3, rs=r3, imm=-1
    BNZ rs=r3, target=top
    HALT
""")
    out = tmp_path / "p.bin"
    assert run("asm", str(src), "-o", str(out)).exit_code == 0
    text = run("disasm", str(out)).output
    src2 = tmp_path / "q.s"
    src2.write_text(text)
    out2 = tmp_path / "q.bin"
    assert run("asm", str(src2), "-o", str(out2)).exit_code == 0
    assert out.read_bytes() == out2.read_bytes()


def test_asm_error_names_file_line_column(tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("NOP\nLOAD sram=1, rows=zz\n")
    r = CliRunner().invoke(main, ["asm", str(src), "-o", str(tmp_path / "x.bin")])
    assert r.exit_code == 2
    assert f"{src}:2:" in r.output
    assert not (tmp_path / "x.bin").exists()


def test_compile_and_disasm_program(tmp_path):
    out = tmp_path / "m.fpx"
    r = run("compile", "--model", "gpt2", "--hw", "u280", "--prompt-len", "16", "-o", str(out), "--json")
    d = json.loads(r.output)
    assert d["streams"]["decode"] > 100 and out.exists()
    text = run("disasm", str(out), "--stream", "decode").output
    assert "ARGMAX" in text and "BNZ" in text


def test_simulate_json_has_the_documented_keys(tmp_path):
    jpath, tpath = tmp_path / "r.json", tmp_path / "t.json"
    r = run("simulate", "--model", "gpt2", "--hw", "u280", "--prompt-len", "8", "--gen-len", "4",
            "--json", str(jpath), "--trace", str(tpath))
    assert r.exit_code == 0
    d = json.loads(jpath.read_text())
    assert SIMULATE_KEYS <= set(d)
    assert set(d["unit_utilization"]) >= {"dma", "mpu", "vpu"}
    assert 0 < d["hbm_bw_utilization"] <= 1
    trace = json.loads(tpath.read_text())
    assert trace["traceEvents"]


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "fpgpt.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "simulate" in r.stdout


def test_rtl_writes_verilog_and_manifest_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "rtl"
    # the units only: the whole core's Verilog and its lint are test_hw_emit's (2 CPU minutes)
    r = run("rtl", "--hw", "tiny", "-o", str(out), "--json", "--no-top", "--no-lint")
    assert r.exit_code == 0
    manifest = json.loads(r.output[r.output.index("{"):])
    assert manifest["hw"]["name"] == "tiny" and manifest["artifact"] == "tiny_4x8_v8s4_h4x64_150mhz"
    assert all(c["ports"] for c in manifest["components"])
    files = sorted(p.name for p in out.iterdir())
    assert any(f.endswith(".v") for f in files) and any(f.endswith("manifest.json") for f in files)
    assert all(f.startswith("tiny_4x8_v8s4_h4x64_150mhz_") for f in files)
    r = CliRunner().invoke(main, ["rtl", "--hw", "tiny", "-o", str(out), "--no-lint"])
    assert r.exit_code == 2 and "--force" in r.output
