"""Property-based tests (Hypothesis) of the data invariants every run relies on.

Tokenizers round-trip, training subsets are nested prefixes made of whole-pool epochs, and an
episode's side of the split depends on that episode alone. On failure Hypothesis prints the
smallest failing example and a `@reproduce_failure` line that replays it.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import assume, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from scaling.data.splits import nested_indices, validation_mask  # noqa: E402
from scaling.data.tokenizers import ActionTokenizer, InstructionTokenizer, split_words  # noqa: E402

_ALNUM = "abcdexyz0189"
WORD = st.builds(lambda a, b: f"{a}-{b}" if b else a, st.text(_ALNUM, min_size=1, max_size=8),
                 st.text(_ALNUM, max_size=3))  # words, some hyphenated ("pick-place")
TEXT = st.lists(st.one_of(WORD, st.sampled_from([",", ".", "!", "?"])), min_size=1, max_size=12).map(" ".join)
CASED = TEXT.flatmap(lambda t: st.sampled_from([t, t.upper(), t.title(), f"  {t}\t"]))


@given(st.lists(CASED, min_size=1, max_size=8))
def test_instruction_tokenizer_round_trips_its_own_texts(texts):
    tok = InstructionTokenizer.build(texts)
    assert InstructionTokenizer.from_dict(tok.to_dict()).itos == tok.itos
    batch = tok.encode_batch(texts)  # (B, max_len), padded with 0
    for text, row in zip(texts, batch):
        ids = tok.encode(text)
        assert tok.unk_id not in ids and tok.pad_id not in ids and len(ids) <= tok.max_len
        assert tok.decode(ids) == " ".join(split_words(text))  # lower-cased words and marks, nothing lost
        assert row[: len(ids)].tolist() == ids and not row[len(ids):].any()


@given(st.lists(TEXT, min_size=1, max_size=5), TEXT)
def test_instruction_tokenizer_unknown_words_map_to_unk(known, other):
    tok = InstructionTokenizer.build(known)
    words = split_words(other)
    ids = tok.encode(other)
    assert len(ids) == len(words)
    for w, i in zip(words, ids):
        assert (i == tok.unk_id) == (w not in tok.stoi)


# q01 and the q99 - q01 spread per dimension, in the ranges of robot actions (float32 resolves a bin there).
BOUNDS = st.lists(st.tuples(st.floats(-10, 10), st.floats(0.1, 20)), min_size=1, max_size=6)


@given(BOUNDS, st.data())
def test_action_tokenizer_round_trips_within_half_a_bin(bounds, data):
    q01 = np.array([lo for lo, _ in bounds])
    q99 = q01 + np.array([width for _, width in bounds])
    tok = ActionTokenizer(q01, q99)
    assert ActionTokenizer.from_dict(tok.to_dict()).to_dict() == tok.to_dict()
    unit = data.draw(hnp.arrays(np.float64, (7, len(bounds)), elements=st.floats(0, 1)))
    actions = (q01 + unit * (q99 - q01)).astype(np.float32)  # (7, A) inside [q01, q99]
    tokens = tok.encode(actions)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() < tok.bins
    half_bin = (q99 - q01) / (2 * tok.bins)  # half of 2/bins normalised units, in raw units
    slack = 1e-5 * np.maximum(np.abs(q01), np.abs(q99)) + 1e-6  # float32 rounding of the raw values
    assert np.all(np.abs(tok.decode(tokens) - actions) <= half_bin + slack)
    np.testing.assert_array_equal(tok.encode(tok.decode(tokens)), tokens)  # bin centres are fixed points
    order = np.argsort(actions, axis=0, kind="stable")  # encoding is monotone in every dimension
    assert np.all(np.diff(np.take_along_axis(tokens, order, axis=0), axis=0) >= 0)


@given(st.integers(1, 40), st.integers(0, 150), st.integers(0, 150), st.integers(0, 2**32 - 1))
def test_nested_subsets_are_prefixes_made_of_whole_epochs(m, n, extra, seed):
    pool = np.arange(1000, 1000 + m)
    small, big = nested_indices(pool, n, seed=seed), nested_indices(pool, n + extra, seed=seed)
    np.testing.assert_array_equal(big[:n], small)
    assert small.dtype == np.int64 and small.size == n
    for start in range(0, big.size - m + 1, m):  # every complete epoch is a permutation of the pool
        assert sorted(big[start:start + m].tolist()) == pool.tolist()
    tail = big[big.size - big.size % m:]
    assert len(set(tail.tolist())) == tail.size  # the last, partial epoch never repeats a frame


UIDS = st.lists(st.text("0123456789abcdef", min_size=8, max_size=16), min_size=2, max_size=60, unique=True)


@given(UIDS, UIDS, st.floats(0.05, 0.5), st.integers(0, 3), st.randoms(use_true_random=False))
def test_an_episodes_side_of_the_split_depends_on_it_alone(first, more, frac, seed, rng):
    more = [u for u in more if u not in set(first)]
    grown = first + more
    mask = validation_mask(["s"] * len(grown), grown, val_fraction=frac, seed=seed)
    # The fallback that forces one episode onto each side only acts on an all-one-side split.
    assume(0 < mask[: len(first)].sum() < len(first))
    small = validation_mask(["s"] * len(first), first, val_fraction=frac, seed=seed)
    np.testing.assert_array_equal(small, mask[: len(first)])  # stable as the dataset grows
    order = list(range(len(grown)))
    rng.shuffle(order)
    shuffled = validation_mask(["s"] * len(grown), [grown[i] for i in order], val_fraction=frac, seed=seed)
    np.testing.assert_array_equal(shuffled, mask[order])  # and whatever the order of the episodes
