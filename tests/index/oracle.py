"""Brute-force token index, the oracle the real index is compared with.

Every token's bytes are walked through the DFA from every DFA state, one byte at a time over
the full ``[S, 256]`` transition table (no trie, no byte classes, no class merging). Then
token-level reachability is computed by plain fixed-point iteration, and distances to a match
by plain breadth-first search. Slow (states x total token bytes) and obviously right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Oracle:
    walk: np.ndarray  # int64[S_dfa, V]: DFA state after each token, 0 dead
    keep: np.ndarray  # bool[S_dfa]: states in the index
    dist: np.ndarray  # int64[S_dfa]: fewest tokens to a match, -1 if none
    allowed: np.ndarray  # bool[S_dfa, V]: token allowed (EOS excluded)


def dfa_transitions(dfa) -> np.ndarray:
    """``int64[S, 256]`` full transition table of a DFA-shaped object."""
    return np.asarray(dfa.table, dtype=np.int64)[:, np.asarray(dfa.byte_classes, dtype=np.int64)]


def walk_tokens(dfa, token_bytes: list[bytes], usable: np.ndarray) -> np.ndarray:
    """``int64[S, V]``: the state after each usable token from each state (0 = dead)."""
    trans = dfa_transitions(dfa)
    num_states = trans.shape[0]
    v = len(token_bytes)
    lengths = np.array([len(b) for b in token_bytes])
    width = int(lengths.max(initial=0))
    mat = np.zeros((v, max(width, 1)), dtype=np.int64)
    for i, b in enumerate(token_bytes):
        mat[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    cur = np.repeat(np.arange(num_states)[:, None], v, axis=1)
    for k in range(width):
        act = np.nonzero(lengths > k)[0]
        cur[:, act] = trans[cur[:, act], mat[act, k][None, :]]
    cur[:, ~usable] = 0
    cur[:, lengths == 0] = 0
    cur[0, :] = 0
    return cur


def oracle(dfa, vocab) -> Oracle:
    usable = ~vocab.never_allowed()
    walk = walk_tokens(dfa, vocab.token_bytes, usable)
    num_states = walk.shape[0]
    accepting = np.asarray(dfa.accept) >= 0
    succ = [set(np.unique(walk[s][walk[s] != 0]).tolist()) for s in range(num_states)]
    # co-reachable: fixed point of "accepting, or some token leads to a co-reachable state"
    co = accepting.copy()
    changed = True
    while changed:
        changed = False
        for s in range(1, num_states):
            if not co[s] and any(co[t] for t in succ[s]):
                co[s] = changed = True
    # reachable from the start through co-reachable states
    reach = np.zeros(num_states, dtype=bool)
    if co[dfa.start]:
        reach[dfa.start] = True
        stack = [dfa.start]
        while stack:
            s = stack.pop()
            for t in succ[s]:
                if co[t] and not reach[t]:
                    reach[t] = True
                    stack.append(t)
    keep = reach & co
    # distances: BFS backwards from accepting states
    dist = np.where(accepting, 0, -1).astype(np.int64)
    level = 0
    while True:
        frontier = set(np.nonzero(dist == level)[0].tolist())
        grew = False
        for s in range(1, num_states):
            if dist[s] < 0 and succ[s] & frontier:
                dist[s] = level + 1
                grew = True
        if not grew:
            break
        level += 1
    allowed = (walk != 0) & co[walk]
    allowed[~keep] = False
    return Oracle(walk=walk, keep=keep, dist=dist, allowed=allowed)


def unpack(bitmask_row, vocab_size: int) -> np.ndarray:
    """``bool[V]`` from one ``int32[W]`` bitmask row."""
    words = np.asarray(bitmask_row, dtype=np.int64) & 0xFFFFFFFF
    bits = (words[:, None] >> np.arange(32)[None, :]) & 1
    return bits.reshape(-1)[:vocab_size].astype(bool)


def compare(index, dfa, vocab) -> dict:
    """Check ``index`` against the oracle; returns counts (all zero when exact)."""
    o = oracle(dfa, vocab)
    dfa_of = np.asarray(index.dfa_state.cpu())
    new_id = np.full(o.walk.shape[0], -1)
    new_id[dfa_of] = np.arange(dfa_of.size)
    errors = {
        "false_allow": 0,
        "false_deny": 0,
        "wrong_next": 0,
        "eos": 0,
        "min_tokens": 0,
        "states": 0,
    }
    if set(dfa_of.tolist()) != set(np.nonzero(o.keep)[0].tolist()):
        errors["states"] += 1
    accept = np.asarray(dfa.accept)
    eos = np.zeros(vocab.size, dtype=bool)
    eos[vocab.eos_ids] = True
    nbc = np.asarray(index.rows_of(range(index.num_states)).cpu())  # [S, C]
    class_of = np.asarray(index.class_of.cpu())
    bitmask = np.asarray(index.bitmask.cpu())
    min_tokens = np.asarray(index.min_tokens.cpu())
    for i, s in enumerate(dfa_of):
        got = unpack(bitmask[i], vocab.size)
        want = o.allowed[s].copy()
        want[eos] = accept[s] >= 0
        errors["false_allow"] += int((got & ~want).sum())
        errors["false_deny"] += int((~got & want).sum())
        nxt = nbc[i, class_of]
        errors["wrong_next"] += int((got != (nxt >= 0)).sum())
        text_ok = want & ~eos
        errors["wrong_next"] += int((nxt[text_ok] != new_id[o.walk[s, text_ok]]).sum())
        if accept[s] >= 0:
            errors["eos"] += int((nxt[eos] != i).sum())
        else:
            errors["eos"] += int((nxt[eos] != -1).sum())
        errors["min_tokens"] += int(min_tokens[i] != o.dist[s])
    return errors
