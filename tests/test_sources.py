"""Sample sources: local folders and JSONL, builtin sets, and the hub's `contextual` falling back to `textvqa`
when its image links are dead (the hub loader mocked: offline)."""
from ovphi.calibration import sources
from ovphi.calibration.sources import EVAL_BUILTIN, load_samples
from ovphi.images import image_digest


def test_contextual_falls_back_to_textvqa_when_its_links_are_dead(monkeypatch, red_image):
    rows = {"ucla-contextual/contextual_test": [{"image_url": "http://127.0.0.1:9/dead.png", "instruction": "Say."}] * 5,
            "lmms-lab/textvqa": [{"image": red_image, "question": f"Question {n}?"} for n in range(5)]}
    monkeypatch.setattr(sources, "hub_rows", lambda repo, split: iter(rows[repo]))
    samples = load_samples("contextual", 3)
    assert samples.source == "textvqa" and [s.instruction for s in samples.samples] == [
        "Question 0?", "Question 1?", "Question 2?"]
    assert samples.notes == ["contextual gave 0 of 3 images (5 links dead); using textvqa instead"]


def test_builtin_sets_are_distinct_and_complete():
    calibration = load_samples("builtin")
    evaluation = load_samples("builtin", builtin=EVAL_BUILTIN)
    assert len(calibration.samples) == 36 and len(evaluation.samples) == 12
    assert not calibration.skipped and not evaluation.skipped
    digests = lambda found: {image_digest(s.image) for s in found.samples}  # noqa: E731
    assert not digests(calibration) & digests(evaluation)  # no evaluation picture was calibrated on
    assert max(max(s.image.size) for s in calibration.samples) <= sources.MAX_SIDE
