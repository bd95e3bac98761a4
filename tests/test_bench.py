"""`ovphi bench` end to end on the tiny INT4 IR with one run: the report's fields, units and plot."""
import json
import os
import subprocess
import sys

import openvino as ov
import pytest

from ovphi.runtime import load


def test_bench_writes_json_markdown_and_a_png(int4_ir, tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "ovphi", "bench", str(int4_ir), "--out", str(out), "--runs", "1",
                             "--max-new-tokens", "6"], capture_output=True, text=True, env=env, timeout=900,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["versions"]["openvino"]
    assert report["machine"]["cpu"] and "sse2" in report["machine"]["cpu_flags"]  # every x86-64 CPU has SSE2
    # the compute roof is measured in the precision the CPU plugin infers in on this CPU
    default = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    assert report["roofline_machine"]["matmul_precision"] == default
    assert report["roofline_machine"]["matmul_flops_per_s"]["best"] > 1e9
    assert [(v["backend"], v["weights"]) for v in report["variants"]] == [("optimum", "int4"), ("genai", "int4")]
    optimum, genai = report["variants"]
    assert 0 < optimum["load_cached_s"] and genai["load_cached_s"] is None  # genai compiles on CPU, no cache
    for variant in report["variants"]:
        assert 0 < variant["load_cold_s"] and variant["peak_rss_bytes"] > 1e8
        one_image = variant["scenarios"]["image_nc4"]
        assert one_image["prompt_tokens"]["median"] > 757
        assert 0 < one_image["vision_s"]["median"] <= one_image["ttft_s"]["median"] < 60  # seconds, not ms
        assert 0 < one_image["tpot_s"]["median"] < 1
        for stats in filter(None, variant["scenarios"].values()):  # each roof fraction is roof / measured
            roof = stats["roofline"]
            assert roof["tpot_roof_fraction"] == pytest.approx(roof["decode_roof_s"] / stats["tpot_s"]["median"])
            assert 0 < roof["tpot_roof_fraction"] and 0 < roof["decode_roof_s"] < stats["tpot_s"]["median"] * 10
        assert one_image["roofline"]["ttft_roof_fraction"] == pytest.approx(
            one_image["roofline"]["prefill_roof_s"] / one_image["ttft_s"]["median"])
        second = variant["scenarios"]["second_turn"]
        assert second["processed_tokens"]["median"] < second["prompt_tokens"]["median"]
        assert 0 < variant["ready_s"] < 600 and 0 < variant["rss_file_bytes"] < variant["peak_rss_bytes"]
        assert 0 < variant["rss_anon_bytes"] < variant["peak_rss_bytes"]
        limited = variant["scenarios"]["ask_4gb"]  # a fresh `ovphi ask` in a 4 GiB memory cgroup (run as root)
        readings = limited["memory_limit"][0]
        assert readings["limit_bytes"] == 4 * 2**30 and readings["oom_kills"] == 0
        # its charge holds at least its heap (another process's, measured alone) and stays under the limit
        assert 0.8 * variant["rss_anon_bytes"] < readings["max_usage_bytes"] <= 4 * 2**30
        assert 0 < limited["ttft_s"]["median"] < 600 and 0 < limited["tpot_s"]["median"] < 1
        first = variant["first_request"]
        assert first["scenario"] == "image_nc4" and first["steady_ttft_s"] == one_image["ttft_s"]["median"]
        assert 0 < first["ttft_s"] and 0 < first["warm_up_s"] and 0 < first["ttft_after_warm_up_s"]
    assert report["variants"][1]["scenarios"]["image_nc16"] is None  # genai: num_crops from the folder
    for variant in report["variants"]:  # both engines constrain
        assert 0 < variant["scenarios"]["json_schema"]["tpot_s"]["median"] < 1
    markdown = (out / "report.md").read_text()
    assert "| variant | backend |" in markdown and markdown.count("| ask_4gb | answered under 4 GiB |") == 2
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left


def test_bad_scenario_is_one_line(int4_ir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "ovphi", "bench", str(int4_ir), "--out", str(tmp_path / "r"),
                             "--scenario", "nope"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert result.returncode != 0 and "unknown scenario nope" in result.stderr


def test_bench_sets_the_runtimes_with_their_defaults_beside_ovphi(int4_ir, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "ovphi", "bench", f"optimum-stock:{int4_ir}",
                             f"genai-stock:{int4_ir}", "--scenario", "second_turn", "--out", str(out), "--runs", "1",
                             "--max-new-tokens", "6"], capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, HF_HUB_OFFLINE="1"), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    stock_optimum, stock_genai = json.loads((out / "report.json").read_text())["variants"]
    assert (stock_optimum["backend"], stock_genai["backend"]) == ("optimum-stock", "genai-stock")
    second = stock_optimum["scenarios"]["second_turn"]
    assert second["processed_tokens"]["median"] == second["prompt_tokens"]["median"]  # generate starts over
    for variant in (stock_optimum, stock_genai):
        assert variant["load_cached_s"] is None and variant["ov_options"] == {}
        assert "warm_up_s" not in variant["first_request"]  # their defaults have no warm-up


def test_a_variants_weights_are_read_from_its_folder_and_options(tiny_dir, int4_ir):
    from ovphi.bench.weights import weights_of
    from ovphi.roofline import weight_bytes

    pytorch = load(tiny_dir, "pytorch")
    decoder = list(pytorch.model.model.layers.parameters()) + list(pytorch.model.lm_head.parameters())
    assert weights_of(pytorch) == ("f32", sum(p.numel() * 4 for p in decoder), 4)
    assert weights_of(load(int4_ir)) == ("int4", weight_bytes(int4_ir), 1)  # the CPU plugin's u8 KV cache
    assert weights_of(load(int4_ir, kv_cache_precision="f16"))[2] == 2
