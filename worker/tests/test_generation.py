"""worker/tuna_torch/generation.py's stop rule, without a model: where a reply ends (the first
stop token, or the token that completes a stop text in the last `window` tokens' text, as
eval.json publishes Tuna's rule), and the stopping criterion transformers calls per step."""
import torch

from tuna_torch import generation

# A toy decoder: token i is the character chr(ord('a') + i); 26 is '<', 27 '|', 28 '>'.
ALPHABET = "abcdefghijklmnopqrstuvwxyz<|>"


def decode(ids):
    return "".join(ALPHABET[i] for i in ids)


def ids(text):
    return [ALPHABET.index(c) for c in text]


def test_a_reply_ends_at_its_first_stop_token():
    assert generation._end(ids("abcde"), {2}, None, [], 8) == (3, "stop")
    assert generation._end(ids("abcde"), set(), None, [], 8) == (5, "length")


def test_a_reply_ends_at_the_token_that_completes_a_stop_text():
    row = ids("xy<|end|>zz")
    assert generation._end(row, set(), decode, ["<|end|>"], 8) == (9, "stop")
    # the text must fall inside the window of last tokens: a window of 4 never sees all 7 characters
    assert generation._end(row, set(), decode, ["<|end|>"], 4) == (len(row), "length")
    # whichever comes first
    assert generation._end(ids("x<|end|>b"), {1}, decode, ["<|end|>"], 8) == (8, "stop")
    assert generation._end(ids("b<|end|>"), {1}, decode, ["<|end|>"], 8) == (1, "stop")


def test_the_stopping_criterion_marks_rows_whose_new_tokens_end_a_stop_text():
    prompt = ids("<|end|>")  # in the prompt: must not count
    rows = torch.tensor([prompt + ids("ab<|end|>"), prompt + ids("abcdefghi")])
    stop = generation._StopTexts(decode, ["<|end|>"], 8, len(prompt))
    assert stop(rows, None).tolist() == [True, False]
