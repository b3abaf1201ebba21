"""Action tokenizer round trip (<= half a bin inside q01..q99) and the instruction tokenizer."""

from __future__ import annotations

import numpy as np

from scaling.data.tokenizers import ActionTokenizer, InstructionTokenizer, split_words


def test_action_round_trip_within_half_bin():
    rng = np.random.default_rng(0)
    q01, q99 = np.array([-2.0, 0.0, 10.0]), np.array([3.0, 0.5, 10.0])  # last dim is constant
    tok = ActionTokenizer(q01, q99)
    x = rng.uniform(q01, q99, size=(5000, 3))
    back = tok.decode(tok.encode(x))
    half_bin = (q99 - q01) / 2 * tok.bin_width / 2  # half a bin in raw units
    assert np.all(np.abs(back - x)[:, :2] <= half_bin[:2] + 1e-5)
    np.testing.assert_allclose(back[:, 2], 10.0)
    tokens = tok.encode(x)
    assert tokens.dtype == np.int64 and tokens.min() >= 0 and tokens.max() <= 255
    assert tok.encode(np.array([[-2.0, 0.0, 10.0]]))[0, 0] == 0
    assert tok.encode(np.array([[3.0, 0.5, 10.0]]))[0, 0] == 255


def test_action_normalize_clips_and_inverts():
    tok = ActionTokenizer([-1.0, 0.0], [1.0, 4.0])
    np.testing.assert_allclose(tok.normalize(np.array([[-5.0, 2.0], [0.5, 9.0]])), [[-1, 0], [0.5, 1]])
    x = np.array([[0.3, 1.7]])
    np.testing.assert_allclose(tok.unnormalize(tok.normalize(x)), x, rtol=1e-6)
    assert ActionTokenizer.from_dict(tok.to_dict()).to_dict() == tok.to_dict()


def test_instruction_tokenizer():
    texts = ["Push the red cube to the LEFT.", "stack blue-ish ball on it!"]
    assert split_words(texts[0]) == ["push", "the", "red", "cube", "to", "the", "left", "."]
    tok = InstructionTokenizer.build(texts)
    assert tok.pad_id == 0 and tok.itos[:2] == ["<pad>", "<unk>"]
    assert tok.max_len == 8 and tok.vocab_size == 2 + len(set(split_words(" ".join(texts))))
    ids = tok.encode(texts[0])
    assert 0 not in ids and tok.decode(ids) == "push the red cube to the left ."
    assert tok.encode("push the purple cube")[2] == tok.unk_id
    batch = tok.encode_batch(texts)
    assert batch.shape == (2, 8) and batch.dtype == np.int64 and batch[1, -1] == 0
    again = InstructionTokenizer.from_dict(tok.to_dict())
    assert again.encode(texts[1]) == tok.encode(texts[1])
    with_specials = InstructionTokenizer.build(texts, add_bos_eos=True)
    assert with_specials.max_len == 10 and with_specials.encode("push")[0] == with_specials.stoi["<bos>"]


def test_union_vocabulary():
    a, b = InstructionTokenizer.build(["push the cube"]), InstructionTokenizer.build(["lift the long red ball"])
    u = InstructionTokenizer.union([a, b])
    assert set(u.words) == set(a.words) | set(b.words) and u.max_len == 5
    assert u.decode(u.encode("push the red ball")) == "push the red ball"
