"""The benchmark scenarios as data: a name -> what the conversation holds; the last turn is measured (every
turn of a multi-turn scenario is also reported). Adding a scenario is one entry."""
from dataclasses import dataclass

from ..model.constants_phi3_v import crop_grid
from ..runtime import ChatSession, GenerationConfig
from ..runtime.constraint import schema_grammar

DESCRIBE = "Describe the image in detail."
# an answer constrained to JSON (the json_schema scenario), ending where its JSON ends (openvino.genai lifts the
# constraint there, so no engine runs past it): its TPOT against image_nc4's is the constraint's cost
DESCRIPTION_SCHEMA = ('{"type": "object", "required": ["objects", "summary"], "additionalProperties": false,'
                      ' "properties": {"objects": {"type": "array", "items": {"type": "string"}},'
                      ' "summary": {"type": "string"}}}')


@dataclass(frozen=True)
class Scenario:
    images: int  # pictures shown with the first turn
    turns: tuple  # the user's questions in order
    num_crops: int | None = None  # None: the folder's (4)
    eager: bool = True  # also run on eager engines (PyTorch: a full-size fp32 turn takes minutes)
    natural_length: bool = False  # answers end at a stop token (max_new_tokens caps them): real re-tokenization
    repeat: bool = False  # measured: a new conversation (after a reset) about the same image and question
    fresh_process: bool = False  # measured: a new `ovphi ask` process, from its start to the first token
    json_schema: str | None = None  # answers constrained to this schema (engines that constrain)
    memory_limit_bytes: int | None = None  # fresh_process: the process runs in a memory cgroup of this size


SCENARIOS = {
    "image_nc4": Scenario(images=1, turns=(DESCRIBE,)),
    "image_nc16": Scenario(images=1, turns=(DESCRIBE,), num_crops=16, eager=False),
    "two_images": Scenario(images=2, turns=(DESCRIBE,), eager=False),
    "text_only": Scenario(images=0, turns=("Write a short story about a lighthouse.",)),
    "second_turn": Scenario(images=1, turns=(DESCRIBE, "What else do you notice?"), eager=False),
    "chat_3turns": Scenario(images=1, turns=(DESCRIBE, "Which colours stand out?", "Say it in one sentence."),
                            eager=False, natural_length=True),
    "repeat_image": Scenario(images=1, turns=(DESCRIBE,), eager=False, repeat=True),
    "ask_cold": Scenario(images=1, turns=(DESCRIBE,), eager=False, fresh_process=True),
    "ask_4gb": Scenario(images=1, turns=(DESCRIBE,), eager=False, fresh_process=True, memory_limit_bytes=4 * 2**30),
    "json_schema": Scenario(images=1, turns=(DESCRIBE,), eager=False, natural_length=True,
                            json_schema=DESCRIPTION_SCHEMA),
}


def runs_on(scenario, engine):
    """Whether the engine can run the scenario, and should (eager engines run the short ones only)."""
    capabilities = engine.capabilities
    return ((scenario.num_crops is None or capabilities.num_crops_per_call)
            and (scenario.eager or not capabilities.eager)
            and (scenario.json_schema is None or capabilities.sampler or capabilities.ebnf_grammar))


def crops_of(images, num_crops):
    return sum(columns * rows + 1 for columns, rows, _, _ in (crop_grid(*image.size, num_crops) for image in images))


def run_scenario(engine, scenario, pictures, max_new_tokens):
    """(TurnTimings of every turn, CLIP crops the measured turn encoded) of one in-process run on `pictures`."""
    generation = GenerationConfig(max_new_tokens=max_new_tokens, ignore_eos=not scenario.natural_length,
                                  num_crops=scenario.num_crops,
                                  grammar=scenario.json_schema and schema_grammar(scenario.json_schema))
    chat = ChatSession(engine, generation)
    shown = list(pictures[:scenario.images])
    for conversation in range(1 + scenario.repeat):
        chat.reset()
        turns = []
        for number, question in enumerate(scenario.turns):
            for event in chat.ask(question, shown if number == 0 else []):
                pass
            turns.append(event.timings)
    measured_images = shown if len(scenario.turns) == 1 and turns[-1].vision_s else []
    return turns, crops_of(measured_images, scenario.num_crops or 4)
