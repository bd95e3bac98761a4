"""How far a target model's answers stray from a reference's: divergent tokens, teacher-forced agreement, KL."""
import difflib

import numpy as np


def first_divergent_token(reference, target):
    """FDT: index of the first token where the answers differ; len(reference) when they are identical
    (a target that stops early or runs on diverges where the shorter one ends)."""
    for index, (a, b) in enumerate(zip(reference, target)):
        if a != b:
            return index
    return len(reference) if len(reference) == len(target) else min(len(reference), len(target))


def divergent_tokens(reference, target):
    """SDT: reference tokens not matched in the target by difflib's longest matching blocks."""
    matcher = difflib.SequenceMatcher(a=list(reference), b=list(target), autojunk=False)
    return len(reference) - sum(block.size for block in matcher.get_matching_blocks())


def log_softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def teacher_forced(reference_logits, target_logits):
    """(top-1 agreement, mean KL(reference || target) in nats) over positions of the same answer."""
    if len(reference_logits) == 0:
        return None, None
    ref, tgt = log_softmax(reference_logits), log_softmax(target_logits)
    agreement = float((ref.argmax(-1) == tgt.argmax(-1)).mean())
    kl = float((np.exp(ref) * (ref - tgt)).sum(-1).mean())
    return agreement, max(kl, 0.0)
