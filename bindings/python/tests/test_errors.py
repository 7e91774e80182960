"""Bad input raises the QuillError subclass of its kind, with the library's message, and
never takes the interpreter down."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import quill

from conftest import REPO


def test_a_missing_file_is_a_file_error(tmp_path):
    missing = tmp_path / "missing.gguf"
    with pytest.raises(quill.FileError, match="missing.gguf"):
        quill.Model.load(missing)


def test_a_text_file_as_a_model_is_a_file_error():
    with pytest.raises(quill.FileError, match="not a GGUF file"):
        quill.Model.load(REPO / "README.md")


@pytest.mark.parametrize("kwargs,name", [
    (dict(temperature=-1), "temperature"), (dict(top_p=1.5), "top_p"),
    (dict(min_p=float("nan")), "min_p"), (dict(top_k=-3), "top_k"),
    (dict(repeat_penalty=0), "repeat_penalty"), (dict(repeat_last_n=-2), "repeat_last_n"),
    (dict(seed=-1), "seed"), (dict(temprature=0.5), "temprature"),
    (dict(mirostat=3), "mirostat"), (dict(xtc_threshold=2), "xtc_threshold"),
    (dict(grammar='root ::= ("a"'), "line 1, column"),
    (dict(json_schema={"type": "object", "not": {}}), "keyword 'not' is not supported"),
    (dict(json_schema={}, grammar="root ::= [a-z]"), "grammar and json_schema both given"),
])
def test_a_sampling_setting_out_of_range_is_a_parameter_error(ctx, kwargs, name):
    with pytest.raises(quill.ParameterError, match=name):
        ctx.generate("Once", 5, **kwargs)
    assert ctx.generate("Once", 2).n_tokens == 2  # the context is still usable


def test_a_chain_stage_the_library_does_not_know_is_a_parameter_error(ctx):
    with pytest.raises(quill.ParameterError, match="top-q"):
        ctx.generate("Once", 5, samplers=["top-k", "top-q"])


@pytest.mark.parametrize("kwargs", [dict(n_ctx=-1), dict(n_ctx=0), dict(n_seq=0),
                                    dict(cache_type="f8"), dict(threads=0)])
def test_a_context_setting_out_of_range_is_a_parameter_error(model, kwargs):
    with pytest.raises(quill.ParameterError):
        quill.Context(model, **kwargs)


def test_a_cache_larger_than_the_machine_is_an_out_of_memory_error(model):
    with pytest.raises(quill.OutOfMemoryError, match="GB"):
        quill.Context(model, n_ctx=1 << 28)


def test_a_closed_context_is_a_context_error(model):
    ctx = quill.Context(model)
    ctx.close()
    ctx.close()  # twice is harmless
    for call in [lambda: ctx.generate("Once"), lambda: ctx.stream("Once"),
                 lambda: ctx.embed("Once"), lambda: ctx.explain_step("Once"),
                 lambda: ctx.beam_search("Once", 1), lambda: ctx.generate_batch(["Once"]),
                 lambda: ctx.chat([{"role": "user", "content": "hi"}], template="chatml"),
                 lambda: ctx.n_ctx]:
        with pytest.raises(quill.ContextError, match="closed"):
            call()


def test_a_closed_model_closes_its_contexts(model_path):
    m = quill.Model.load(model_path)
    ctx = quill.Context(m)
    m.close()
    assert ctx.closed
    with pytest.raises(quill.ContextError, match="closed"):
        ctx.generate("Once")
    with pytest.raises(quill.ContextError, match="closed"):
        m.tokenize("Once")
    with pytest.raises(quill.ContextError, match="closed"):
        quill.Context(m)


def test_a_prompt_longer_than_the_context_is_a_context_error(model):
    with quill.Context(model, n_ctx=8) as ctx:
        with pytest.raises(quill.ContextError, match="holds 8"):
            ctx.generate("Once upon a time there was a little girl named Lily")


def test_beam_search_on_too_few_sequences_is_a_context_error(ctx):
    with pytest.raises(quill.ContextError, match="4 beams need 4 sequences"):
        ctx.beam_search("Once", beam_size=4)
    with pytest.raises(quill.ParameterError, match="n_best"):
        ctx.beam_search("Once", beam_size=2, n_best=3)


def test_generate_batch_with_more_prompts_than_sequences_is_a_parameter_error(ctx):
    with pytest.raises(quill.ParameterError, match="n_seq >= 2"):
        ctx.generate_batch(["Once", "The"])


def test_a_call_from_a_second_thread_while_one_runs_is_a_context_error(ctx):
    errors: list[Exception] = []
    entered = threading.Event()

    def call_generate() -> None:
        try:
            ctx.generate("Once", 2)
        except quill.QuillError as e:
            errors.append(e)
        entered.set()

    s = ctx.stream("Once upon a time", 120, ignore_eos=True)
    next(s)
    t = threading.Thread(target=call_generate)
    t.start()
    entered.wait()
    t.join()
    s.close()
    assert len(errors) == 1 and isinstance(errors[0], quill.ContextError)


def test_an_unknown_chat_template_and_a_bad_message_are_parameter_errors(model, ctx):
    with pytest.raises(quill.ParameterError, match="chatXL"):
        model.apply_chat_template([{"role": "user", "content": "hi"}], template="chatXL")
    with pytest.raises(quill.ParameterError, match="role and content"):
        ctx.chat([("user", "hi")], template="chatml")


def test_every_error_is_a_quill_error_with_the_librarys_message(tmp_path):
    with pytest.raises(quill.QuillError) as e:
        quill.Model.load(tmp_path / "x.gguf")
    assert str(e.value).startswith(str(tmp_path / "x.gguf"))


def test_quill_library_naming_a_missing_file_is_an_import_error(tmp_path):
    env = dict(os.environ, QUILL_LIBRARY=str(tmp_path / "libquill.so"),
               PYTHONPATH=str(Path(quill.__file__).parents[1]))
    done = subprocess.run([sys.executable, "-c", "import quill"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 1
    assert "ImportError: QUILL_LIBRARY=" in done.stderr and "no such file" in done.stderr
