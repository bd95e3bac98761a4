"""Writing an edited IR over the one it was read from."""
import os

import openvino as ov


def save_in_place(model, xml):
    """Save `model` as the IR at `xml` (its .xml and .bin): written beside it, then renamed over it."""
    partial = xml.with_name(f".partial-{os.getpid()}-{xml.name}")
    ov.save_model(model, partial, compress_to_fp16=False)
    partial.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    partial.replace(xml)
