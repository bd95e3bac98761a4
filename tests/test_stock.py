"""The runtimes with their own defaults (bench's comparison): optimum's generate answers like ovphi's turn
loop but processes the whole conversation every turn; genai's pipeline runs without ovphi's options."""
from ovphi.runtime import ChatSession, genai_backend, load

GREEDY = dict(max_new_tokens=12, do_sample=False)


def two_turns(vlm, image):
    chat = ChatSession(vlm, **GREEDY)
    turns = []
    for question, images in (("Describe the image.", [image]), ("And the colours?", [])):
        "".join(chat.ask(question, images))
        turns.append((list(vlm.last_answer_ids), chat.last_timings))
    return turns


def test_optimum_generate_answers_like_the_turn_loop_and_encodes_the_image_every_turn(fp32_ir, red_image):
    ours = two_turns(load(fp32_ir), red_image)
    stock_vlm = load(fp32_ir, backend="optimum-stock", kv_cache_precision="f16")
    assert "CACHE_DIR" not in stock_vlm.model.ov_config and "KV_CACHE_PRECISION" not in stock_vlm.model.ov_config
    stock = two_turns(stock_vlm, red_image)
    assert [tokens for tokens, _ in stock] == [tokens for tokens, _ in ours]
    for _, timings in stock:
        assert timings.processed_tokens == timings.prompt_tokens and timings.vision_s > 0
        assert timings.answer_tokens == 12 and 0 < timings.ttft_s < timings.total_s
    assert ours[1][1].vision_s == 0.0 and ours[1][1].processed_tokens < ours[1][1].prompt_tokens


def test_optimum_generate_stops_when_asked(int4_ir, red_image):
    vlm = load(int4_ir, backend="optimum-stock")
    pieces = ChatSession(vlm, max_new_tokens=200).ask("Describe it.", [red_image])
    next(pieces)
    pieces.close()
    assert len(vlm.last_answer_ids) < 200


def test_genai_pipeline_gets_no_options_and_answers_two_turns(int4_ir, red_image, monkeypatch):
    given = []
    pipeline = genai_backend.openvino_genai.VLMPipeline
    monkeypatch.setattr(genai_backend.openvino_genai, "VLMPipeline",
                        lambda *args, **options: given.append(options) or pipeline(*args, **options))
    load(int4_ir, backend="genai")
    vlm = load(int4_ir, backend="genai-stock", kv_cache_precision="f16")
    assert given[0]["ATTENTION_BACKEND"] == "SDPA" and "CACHE_DIR" in given[0] and given[1] == {}
    first, second = two_turns(vlm, red_image)
    assert first[1].answer_tokens == second[1].answer_tokens == 12
    assert second[1].prompt_tokens > first[1].prompt_tokens > 757
