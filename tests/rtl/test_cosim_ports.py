"""Which signals a cocotb Verilator build exposes (fpgpt.hw.cosim.ports_config): the toplevel's
ports, read from its header in either Verilog style, and nothing else (docs/rtl.md, "Only the
top's ports are VPI signals")."""

from __future__ import annotations

import pytest

from fpgpt.hw.cosim import VERILATOR_SPEED, port_names, ports_config

ANSI = """// wrapper
module other (input wire a, output wire b);
endmodule
module top (
  input wire ap_clk,
  input wire [7:0] s_axi_control_awaddr,   // the host's address
  output wire probe
);
  reg rst = 1'b1;
  inner core (.clk(ap_clk));
endmodule
"""

NON_ANSI = """(* top = 1 *)
module lane(clk, rst, a__payload, y);
  input clk;
  wire clk;
  input [15:0] a__payload;
  output [31:0] y;
  wire [31:0] internal;
endmodule
"""


def test_port_names_of_both_header_styles(tmp_path):
    (tmp_path / "a.v").write_text(ANSI)
    (tmp_path / "b.v").write_text(NON_ANSI)
    srcs = [tmp_path / "a.v", tmp_path / "b.v"]
    assert port_names(srcs, "top") == ["ap_clk", "s_axi_control_awaddr", "probe"]
    assert port_names(srcs, "lane") == ["clk", "rst", "a__payload", "y"]
    with pytest.raises(ValueError, match="module inner not found"):
        port_names(srcs, "inner")


def test_ports_config_makes_only_the_ports_public(tmp_path):
    (tmp_path / "b.v").write_text(NON_ANSI)
    vlt = ports_config([tmp_path / "b.v"], "lane", tmp_path / "sim")
    lines = vlt.read_text().splitlines()
    assert lines[0] == "`verilator_config"
    assert lines[1:] == [f'public_flat_rw -module "lane" -var "{n}"'
                         for n in ("clk", "rst", "a__payload", "y")]
    assert "internal" not in vlt.read_text()
    # cocotb's runner passes --public-flat-rw first; ours turns it off after it
    assert VERILATOR_SPEED[0] == "--no-public-flat-rw"
