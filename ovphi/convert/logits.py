"""The language model's logits for ids that have no token, held at -inf in the IR itself.

Phi-3.5-vision gives 32,064 logits and its tokenizer has 32,011 entries: an id past the tokenizer prints nothing
and ends no answer. ovphi's own sampler never picks one (sampling.TokenlessMask); openvino.genai samples from
the IR's logits as they are and did (all 30 tokens of a full-size random-weight answer, which printed nothing),
and under a grammar xgrammar has no bit for such an id, so the constraint dropped. With -inf added to those
logits in the graph, no engine and no model server that reads this folder can choose one.
"""
import numpy as np
import openvino as ov

MASK_NAME = "ovphi_tokenless_ids_mask"
TOKENLESS_IDS_MASKED = "tokenless_ids_masked"  # the manifest's count of them


def mask_tokenless_logits(model, tokens):
    """Add -inf to the `logits` output of the language model (an ov.Model, edited in place) for every id from
    `tokens` (the tokenizer's size) on; returns how many ids that masks (0: none past the tokenizer)."""
    logits = model.output("logits")
    size = logits.get_partial_shape()[-1].get_length()
    if size <= tokens:
        return 0
    mask = np.zeros(size, dtype=np.float32)
    mask[tokens:] = -np.inf
    result = logits.get_node()
    source = result.input_value(0)
    masked = ov.opset13.add(source, ov.opset13.constant(mask), name=MASK_NAME)
    names = source.get_names()
    source.get_tensor().set_names(set())
    masked.output(0).get_tensor().set_names(names)
    result.input(0).replace_source_output(masked.output(0))
    return size - tokens
