"""docs/isa.md is the rendering of the instruction table."""

from pathlib import Path

from fpgpt.isa import INSTRUCTIONS
from fpgpt.isa.docgen import REGENERATE, main, render_isa_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "isa.md"


def test_isa_md_is_up_to_date():
    assert DOC.is_file(), f"docs/isa.md is missing; run `{REGENERATE}` from the repository root"
    if DOC.read_text(encoding="utf-8") != render_isa_markdown():
        raise AssertionError(f"docs/isa.md differs from the instruction table; run `{REGENERATE}` "
                             f"from the repository root")


def test_rendering_covers_every_instruction_and_field():
    text = render_isa_markdown()
    for d in INSTRUCTIONS:
        assert f"### {d.name}\n\nOpcode `0x{d.opcode:02x}`" in text
        for f, pos in d.layout():
            assert f"| `{f.name}` | {f.bits} | [{pos}, {pos + f.bits}) | {f.kind.value} |" in text
    assert "(execution.md)" in text and "## Assembly syntax" in text


def test_entry_point_prints_and_rejects_bad_arguments(capsys):
    assert main([]) == 0
    assert capsys.readouterr().out == render_isa_markdown()
    assert main(["--bogus"]) == 2
