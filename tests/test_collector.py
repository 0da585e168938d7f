"""The collector pause: off inside, restored after, nesting and threads, a caller's choice kept."""

from __future__ import annotations

import gc
import threading

import pytest

from regexlm.collector import collector_paused


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_off_inside_and_on_after():
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_nested_pauses_restore_only_at_the_outermost():
    with collector_paused():
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_restores_it():
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_a_caller_that_disabled_it_keeps_it_disabled():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_threads_restore_when_the_last_ends():
    inside, release = threading.Event(), threading.Event()

    def other():
        with collector_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with collector_paused():
        pass
    assert not gc.isenabled()  # the other thread's pause is still running
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_compile_and_its_exploration_run_with_the_collector_paused(monkeypatch, smollm2_tokenizer):
    import regexlm
    import regexlm.automata as automata
    from regexlm.index.token_index import IndexRows

    seen = {}
    compile_lazy, explore = automata.compile_lazy, IndexRows.explore

    def compile_spy(*args, **kwargs):
        seen["compile"] = gc.isenabled()
        return compile_lazy(*args, **kwargs)

    def explore_spy(self, *args, **kwargs):
        seen["explore"] = gc.isenabled()
        return explore(self, *args, **kwargs)

    monkeypatch.setattr(automata, "compile_lazy", compile_spy)
    monkeypatch.setattr(IndexRows, "explore", explore_spy)
    index = regexlm.compile("[a-z]{2,5}", smollm2_tokenizer, cache=False, mode="auto")
    assert gc.isenabled()
    index.settle()
    assert seen == {"compile": False, "explore": False}
    assert gc.isenabled()
