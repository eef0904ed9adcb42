"""fpgpt: design, simulate and build a multi-FPGA accelerator for transformer text generation."""

__version__ = "0.1.0"
