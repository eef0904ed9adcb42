"""The compile cache (fpgpt/compiler/pipeline.py): a timing-only Program is reused only for the
same code, model, config, prompt length and card, and a cached Program equals a fresh compile."""

import pytest

from fpgpt.compiler import compile_devices, compile_model, pipeline
from fpgpt.config import load_preset
from fpgpt.models import ModelSpec

SPEC = ModelSpec("cache", n_layer=1, n_head=2, d_model=64, d_ff=256, vocab=100, n_ctx=32)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh cache folder, and nothing remembered in this process."""
    monkeypatch.setenv(pipeline.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(pipeline, "_MEMORY", {})
    return tmp_path


def _fresh(spec, hw, prompt_len, monkeypatch):
    """What the passes give, the cache off."""
    with monkeypatch.context() as m:
        m.setenv(pipeline.CACHE_ENV, "off")
        return compile_model(spec, hw, prompt_len=prompt_len)


def test_a_cached_program_equals_a_fresh_compile(cache, monkeypatch):
    hw = load_preset("u280")
    first = compile_model(SPEC, hw, prompt_len=8)
    assert len(list(cache.glob("*.fpc"))) == 1
    monkeypatch.setattr(pipeline, "_MEMORY", {})           # a new process: read from the file
    second = compile_model(SPEC, hw, prompt_len=8)
    third = compile_model(SPEC, hw, prompt_len=8)          # from memory
    fresh = _fresh(SPEC, hw, 8, monkeypatch)
    for p in (first, second, third):
        assert p == fresh
        for name, instrs in fresh.streams.items():
            assert [i.comment for i in p.streams[name]] == [i.comment for i in instrs]
    assert second is not third and second.meta is not third.meta   # each caller's own object
    second.meta["device"] = 5
    assert "device" not in compile_model(SPEC, hw, prompt_len=8).meta


@pytest.mark.parametrize("change", [
    {"hw": {"hbm.channels": 16}},
    {"hw": {"buffers.queue_depth": 4}},
    {"spec": {"d_ff": 128}},
    {"prompt_len": 9},
])
def test_a_changed_input_misses(cache, monkeypatch, change):
    hw, spec, prompt = load_preset("u280"), SPEC, 8
    base = compile_model(spec, hw, prompt_len=prompt)
    if "hw" in change:
        hw = hw.replace(**change["hw"])
    if "spec" in change:
        spec = ModelSpec(**{**SPEC.__dict__, **change["spec"]})
    prompt = change.get("prompt_len", prompt)
    got = compile_model(spec, hw, prompt_len=prompt)
    assert got != base
    assert got == _fresh(spec, hw, prompt, monkeypatch)
    assert len(list(cache.glob("*.fpc"))) == 2


def test_a_code_change_misses(cache, monkeypatch):
    hw = load_preset("u280")
    compile_model(SPEC, hw, prompt_len=8)
    monkeypatch.setattr(pipeline, "_DIGEST", ["another version of the code"])
    compile_model(SPEC, hw, prompt_len=8)
    assert len(list(cache.glob("*.fpc"))) == 2


def test_each_card_has_its_entry(cache, monkeypatch):
    hw = load_preset("u280")
    two = compile_devices(SPEC, hw, prompt_len=8, devices=2)
    again = compile_devices(SPEC, hw, prompt_len=8, devices=2)
    assert two == again and two[0] != two[1]
    assert [p.meta["device"] for p in again] == [0, 1]
    assert len(list(cache.glob("*.fpc"))) == 2


def test_a_damaged_file_is_compiled_again(cache, monkeypatch):
    hw = load_preset("u280")
    good = compile_model(SPEC, hw, prompt_len=8)
    (path,) = cache.glob("*.fpc")
    path.write_bytes(path.read_bytes()[:100])
    monkeypatch.setattr(pipeline, "_MEMORY", {})
    assert compile_model(SPEC, hw, prompt_len=8) == good


def test_off_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(pipeline.CACHE_ENV, "off")
    monkeypatch.setattr(pipeline, "_MEMORY", {})
    monkeypatch.chdir(tmp_path)
    compile_model(SPEC, load_preset("u280"), prompt_len=8)
    assert not any(tmp_path.iterdir()) and not pipeline._MEMORY
