"""The benchmark scenarios as data: a name -> what the conversation holds; the last turn is measured.
Adding a scenario is one entry."""
from dataclasses import dataclass

from ..model.image_processing_phi3_v import crop_grid
from ..runtime import ChatSession, GenerationConfig

DESCRIBE = "Describe the image in detail."


@dataclass(frozen=True)
class Scenario:
    images: int  # pictures shown with the first turn
    turns: tuple  # the user's questions in order; the last one's answer is measured
    num_crops: int | None = None  # None: the folder's (4)
    eager: bool = True  # also run on eager engines (PyTorch: a full-size fp32 turn takes minutes)


SCENARIOS = {
    "image_nc4": Scenario(images=1, turns=(DESCRIBE,)),
    "image_nc16": Scenario(images=1, turns=(DESCRIBE,), num_crops=16, eager=False),
    "two_images": Scenario(images=2, turns=(DESCRIBE,), eager=False),
    "text_only": Scenario(images=0, turns=("Write a short story about a lighthouse.",)),
    "second_turn": Scenario(images=1, turns=(DESCRIBE, "What else do you notice?"), eager=False),
}


def runs_on(scenario, engine):
    """Whether the engine can run the scenario, and should (eager engines run the short ones only)."""
    capabilities = engine.capabilities
    return ((scenario.num_crops is None or capabilities.num_crops_per_call)
            and (scenario.eager or not capabilities.eager))


def run_scenario(engine, scenario, pictures, max_new_tokens):
    """(TurnTimings of the measured turn, CLIP crops it encoded) of one run of a scenario on `pictures`."""
    generation = GenerationConfig(max_new_tokens=max_new_tokens, ignore_eos=True, num_crops=scenario.num_crops)
    chat = ChatSession(engine, generation)
    shown = list(pictures[:scenario.images])
    for number, question in enumerate(scenario.turns):
        for event in chat.ask(question, shown if number == 0 else []):
            pass
    measured = shown if len(scenario.turns) == 1 else []
    crops = sum(columns * rows + 1 for columns, rows, _, _ in
                (crop_grid(*image.size, scenario.num_crops or 4) for image in measured))
    return event.timings, crops
