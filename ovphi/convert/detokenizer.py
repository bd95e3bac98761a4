"""The detokenizer's vocabulary stored as the bytes each token prints, so that openvino.genai constrains answers
to a grammar correctly.

openvino_tokenizers stores SentencePiece pieces in the detokenizer's VocabDecoder (`▁` for a space, `<0x16>` for
the byte 0x16) and turns them into text in the operations after it. openvino.genai gives xgrammar that
vocabulary as it is: xgrammar took `<0x16>` for six printable characters, and a JSON string came out with a raw
control character in it (tiny IR); no token could print the space of an enum value such as "dark blue". With
spaces and ASCII bytes as themselves in the VocabDecoder, the graph prints the same text and xgrammar sees what
is printed. Special tokens (the VocabDecoder's skip list) and non-ASCII bytes keep their pieces, which start
with `<`: ovphi's grammars keep `<` out of JSON strings (json_ebnf.py), so these never print inside one.
"""
import re
from pathlib import Path

import numpy as np
import openvino as ov

from .saving import save_in_place

DETOKENIZER = "openvino_detokenizer.xml"
TOKEN_BYTES = "token bytes"  # the manifest's "detokenizer" once its vocabulary holds them
BYTE_PIECE = re.compile(rb"<0x([0-9A-Fa-f]{2})>")


def token_bytes(piece):
    """What a SentencePiece piece prints: its text with `▁` as a space, and an ASCII byte's `<0xNN>` as that
    byte. Other bytes' pieces stay: the ByteFallback operation after the VocabDecoder turns an incomplete UTF-8
    sequence of them into U+FFFD, which genai's TextStreamer waits on (a raw incomplete sequence crashed it)."""
    byte = BYTE_PIECE.fullmatch(piece)
    if byte:
        value = int(byte.group(1), 16)
        return bytes([value]) if value < 0x80 else piece
    return piece.replace("▁".encode(), b" ")


def write_token_bytes(ir_dir):
    """Rewrite ir_dir's detokenizer with each token's bytes in place of its piece; returns how many tokens
    changed (0: it already held bytes, or has no VocabDecoder)."""
    import openvino_tokenizers  # noqa: F401  (registers VocabDecoder)

    xml = Path(ir_dir) / DETOKENIZER
    model = ov.Core().read_model(xml)
    decoder = next((node for node in model.get_ops() if node.get_type_name() == "VocabDecoder"), None)
    changed = 0
    if decoder is not None:
        begins, ends, chars = (decoder.input_value(index).get_node().get_vector() for index in (1, 2, 3))
        skipped = set(decoder.input_value(4).get_node().get_vector()) if decoder.get_input_size() > 4 else set()
        text = chars.astype(np.uint8).tobytes()
        pieces = [text[begin:end] for begin, end in zip(begins, ends)]
        printed = [piece if index in skipped else token_bytes(piece) for index, piece in enumerate(pieces)]
        changed = sum(piece != new for piece, new in zip(pieces, printed))
        if changed:
            lengths = np.array([len(piece) for piece in printed], dtype=np.int64)
            new_ends = np.cumsum(lengths)
            for index, values in ((1, new_ends - lengths), (2, new_ends)):
                decoder.input(index).replace_source_output(ov.opset13.constant(values.astype(np.int32)).output(0))
            joined = np.frombuffer(b"".join(printed), dtype=np.uint8)
            decoder.input(3).replace_source_output(ov.opset13.constant(joined).output(0))
            save_in_place(model, xml)
    del decoder  # before its model: an openvino_tokenizers node released after its model crashes the process
    return changed
