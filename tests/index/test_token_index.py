"""The TokenIndex contract: shapes, dtypes, layout, per-state queries, devices."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import regexlm
from regexlm.errors import EmptyLanguageError, RegexError
from regexlm.index import TokenIndex
from tests.index.oracle import unpack
from tests.index.walks import text_tokens
from tests.strategies import regex_patterns


@pytest.fixture(scope="module")
def email(smollm2_tokenizer):
    return regexlm.compile(r"[a-z]+@[a-z]+\.com", smollm2_tokenizer, cache=False)


def test_tables_follow_the_contract(email):
    s, c, v = email.num_states, email.num_classes, email.vocab_size
    assert isinstance(email, TokenIndex)
    assert v == 49152
    r = int(email.next_by_class.shape[0])
    assert email.next_by_class.shape == (r, c) and email.next_by_class.dtype == torch.int32
    assert email.row_of.shape == (s,) and email.row_of.dtype == torch.int32
    assert int(email.row_of.min()) >= 0 and int(email.row_of.max()) < r
    assert (email.next_by_class[0] == -1).all(), "row 0 allows nothing"
    assert email.class_of.shape == (v,) and email.class_of.dtype == torch.int32
    assert email.bitmask.shape == (s, (v + 31) // 32) and email.bitmask.dtype == torch.int32
    assert email.min_tokens.shape == (s,) and email.min_tokens.dtype == torch.int32
    assert email.match_index.shape == (s,) and email.match_index.dtype == torch.int32
    assert int(email.next_by_class.min()) >= -1 and int(email.next_by_class.max()) < s
    assert 0 <= email.start_state < s
    tables = sum(
        t.numel() * t.element_size()
        for t in (email.next_by_class, email.row_of, email.class_of, email.min_tokens)
    )
    assert tables <= email.nbytes <= tables + (1 << 20)  # the automaton's cache is counted too


def test_class_of_is_kept_in_two_bytes_a_token_and_its_step_copy_is_counted(smollm2_vocab):
    import numpy as np

    index = regexlm.compile(r"[a-z]{1,8}@\w+", smollm2_vocab, cache=False)
    index.settle()
    host = index._rows.class_of
    assert host.dtype == np.uint16
    before = index.nbytes
    step = index.class_of  # what a step reads: int32, the same classes
    assert step.dtype == torch.int32 and np.array_equal(step.numpy(), host)
    assert index.nbytes == before + step.numel() * 4
    assert index.class_of is step, "no new copy while the classes stay the same"
    tables = index.host_tables()
    assert tables["class_of"].dtype == np.int32
    assert np.array_equal(tables["next_by_class"], index.rows_of(range(index.num_states)).numpy())


def test_bitmask_agrees_with_next_by_class(email):
    for s in range(email.num_states):
        row = torch.from_numpy(unpack(email.bitmask_rows([s])[0], email.vocab_size))
        assert torch.equal(row, email.rows_of([s])[0, email.class_of.long()] >= 0)
        assert torch.equal(email.allowed_tokens(s), row.nonzero().flatten())


def test_bitmask_rows_are_the_rows_asked_for(email):
    states = [email.start_state, email.start_state, email.num_states - 1]
    rows = email.bitmask_rows(states)
    assert rows.shape == (3, (email.vocab_size + 31) // 32) and rows.dtype == torch.int32
    for i, s in enumerate(states):
        assert torch.equal(rows[i], email.bitmask[s])


def test_walking_an_encoded_match(email, smollm2_tokenizer):
    ids = smollm2_tokenizer.encode("alice@example.com", add_special_tokens=False)
    s = email.start_state
    seen = []
    for t in ids:
        seen.append(email.min_tokens_to_match(s))
        s = email.next_state(s, t)
        assert s >= 0
    assert email.is_match(s) and email.min_tokens_to_match(s) == 0
    assert email.next_state(s, smollm2_tokenizer.eos_token_id) == s
    assert all(m >= 1 for m in seen)


def test_uneven_vocabulary_width(smollm2_tokenizer):
    vocab = regexlm.Vocabulary.from_tokenizer(smollm2_tokenizer, vocab_size=49152 + 7)
    index = regexlm.compile(r"[0-9]+", vocab, cache=False)
    assert index.bitmask.shape[1] == (49159 + 31) // 32
    assert not unpack(index.bitmask[index.start_state], 49159 + 32)[49152:].any()


def test_to_device_keeps_the_tables(email):
    same = email.to("cpu")
    assert same is email
    meta = email.to("meta")
    assert meta.next_by_class.device.type == "meta" and meta.class_of.device.type == "meta"
    assert meta.start_state == email.start_state


def test_errors_are_typed(smollm2_tokenizer):
    with pytest.raises(EmptyLanguageError):
        regexlm.compile(r"[a-z]\b[a-z]", smollm2_tokenizer, cache=False)
    with pytest.raises(RegexError):
        regexlm.compile(r"(a)\1", smollm2_tokenizer, cache=False)
    with pytest.raises(TypeError):
        regexlm.compile([], smollm2_tokenizer)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_build_on_cuda_equals_cpu(smollm2_vocab):
    for p in (r"[a-z]+@[a-z]+\.com", r".{0,20}", r"(a|b)*a(a|b){6}"):
        cpu = regexlm.compile(p, smollm2_vocab, cache=False)
        gpu = regexlm.compile(p, smollm2_vocab, device="cuda", cache=False)
        assert gpu.bitmask.is_cuda
        for name in ("next_by_class", "row_of", "class_of", "bitmask", "min_tokens", "match_index"):
            assert torch.equal(getattr(gpu, name).cpu(), getattr(cpu, name)), (p, name)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pattern=st.sampled_from(
        [r"\w{1,12}@[a-z]{2,8}\.(com|org)", r"[a-z ]{0,40}\.", r"(ab|cd)*e{2,5}", r"\d{1,30}"]
    )
    | regex_patterns(),
    mode=st.sampled_from(["lazy", "auto"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_device_tables_sent_row_by_row_equal_the_host_tables(smollm2_vocab, pattern, mode, seed):
    # the copies a device gets (forced here on the CPU): the rows built since appended while
    # the columns stay the same, the whole table otherwise; after every step of a random walk
    # they equal the host tables
    import numpy as np

    try:
        index = regexlm.compile(pattern, smollm2_vocab, cache=False, mode=mode)
    except (RegexError, EmptyLanguageError):
        return
    index._copies_tables = True
    rng = np.random.default_rng(seed)
    state = index.start_state
    for _ in range(12):
        index.ensure_rows([state])
        rows = index._rows
        n = rows.num_states
        assert np.array_equal(index.next_by_class.numpy(), rows.nbc[: rows.num_rows])
        assert np.array_equal(index.row_of.numpy(), rows.row_of[:n])
        assert np.array_equal(index.class_of.numpy(), rows.class_of)
        assert np.array_equal(index.min_tokens.numpy(), rows.min_tokens[:n])
        assert np.array_equal(index.match_index.numpy(), rows.match[:n])
        assert not np.shares_memory(index.next_by_class.numpy(), rows.nbc)
        tokens = text_tokens(index, state, smollm2_vocab.eos_ids)
        if tokens.size == 0:
            break
        state = index.next_state(state, int(rng.choice(tokens)))


def test_the_whole_table_is_sent_only_when_the_columns_change(smollm2_vocab):
    # a walk through counted digits: new rows are appended (the buffer doubled on the device
    # when full); the whole table goes only after a class split
    import numpy as np

    index = regexlm.compile(r"\d{1,40}", smollm2_vocab, cache=False, mode="lazy")
    index._copies_tables = True
    rng = np.random.default_rng(0)
    state, layouts, appended, sent = index.start_state, [], 0, None
    for _ in range(30):
        index.ensure_rows([state])
        assert np.array_equal(index.next_by_class.numpy(), index._rows.nbc[: index._rows.num_rows])
        whole = index.info.get("device_tables_sent", 0)
        if sent is not None and whole == sent[0]:  # no whole table since: the new rows alone
            appended += index._rows.num_rows - sent[1]
        sent = (whole, index._rows.num_rows)
        layout = (index._rows.splits, index._rows.mask_epoch)
        if not layouts or layouts[-1] != layout:
            layouts.append(layout)
        tokens = text_tokens(index, state, smollm2_vocab.eos_ids)
        state = index.next_state(state, int(rng.choice(tokens)))
    assert index.info["device_tables_sent"] == len(layouts)
    assert index.info["device_rows_sent"] == appended > 10
    assert len(layouts) < 15
