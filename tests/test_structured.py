"""`response_format`, tool calls, logprobs and `--json-schema` through a real server, the `openai` client and the
real CLI on the tiny INT4 IR: its weights are random, so only the constraint can make an answer valid. The
constraint tests run for each engine that constrains (optimum with llguidance; genai and genai-batch with
openvino.genai's xgrammar)."""
import json
import subprocess
import sys

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field
from conftest import converted_before
from served import Served, data_url

PAINT = {"type": "object", "additionalProperties": False, "required": ["colour", "coats"],
         "properties": {"colour": {"enum": ["red", "green", "blue"]}, "coats": {"type": "integer", "minimum": 1,
                                                                                 "maximum": 3},
                        "note": {"type": "string", "maxLength": 8}}}
ASK = [{"role": "user", "content": "Describe the paint as JSON."}]


class Paint(BaseModel):
    colour: str = Field(max_length=8)
    coats: int = Field(ge=1, le=3)


@pytest.fixture(scope="module", params=["optimum", "genai", "genai-batch"])
def server(request, int4_ir):
    served = Served(int4_ir, "--no-cache", "--backend", request.param)
    served.model = int4_ir.name  # the folder name is the model's
    served.backend = request.param
    yield served
    served.stop()


def as_schema(schema):
    return {"type": "json_schema", "json_schema": {"name": "paint", "schema": schema, "strict": True}}


def test_twenty_sampled_answers_to_a_json_schema_all_validate(server):
    client = server.client()
    answers = [client.chat.completions.create(model=server.model, messages=ASK, temperature=1.0, seed=seed,
                                              max_tokens=60, response_format=as_schema(PAINT)).choices[0]
               for seed in range(20)]
    for answer in answers:
        assert answer.finish_reason == "stop"
        jsonschema.validate(json.loads(answer.message.content), PAINT)
    assert len({answer.message.content for answer in answers}) > 1


def test_the_openai_clients_parse_returns_the_pydantic_object_streamed_or_not(server, red_image):
    client = server.client()
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(red_image)}},
                                             {"type": "text", "text": "What paint is this?"}]}]
    parsed = client.chat.completions.parse(model=server.model, messages=messages, response_format=Paint,
                                           max_tokens=60).choices[0].message.parsed
    assert isinstance(parsed, Paint) and 1 <= parsed.coats <= 3
    with client.chat.completions.stream(model=server.model, messages=messages, response_format=Paint, max_tokens=60,
                                        temperature=1.0, seed=5) as stream:
        streamed = stream.get_final_completion().choices[0].message.parsed
    assert isinstance(streamed, Paint)


def test_json_object_gives_an_object(server):
    answer = server.client().chat.completions.create(model=server.model, messages=ASK, max_tokens=80, temperature=1.0,
                                                     seed=2, response_format={"type": "json_object"})
    content = answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length" or isinstance(json.loads(content), dict)
    assert content.startswith("{")


def test_ignore_eos_with_a_schema_is_refused_where_the_constraint_would_end_with_the_json(server):
    reply = server.post({"model": server.model, "messages": ASK, "max_tokens": 40, "ignore_eos": True,
                         "response_format": as_schema(PAINT)})
    if server.backend == "optimum":  # ovphi's loop allows only stop ids after the JSON: the answer is the JSON
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 40
        jsonschema.validate(json.loads(reply.json()["choices"][0]["message"]["content"]), PAINT)
    else:  # openvino.genai lifts the constraint once the grammar ends
        assert reply.status_code == 400 and reply.json()["error"]["param"] == "ignore_eos"


@pytest.mark.parametrize("response_format, param", [
    ({"type": "yaml"}, "response_format.type"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": "paint"}, "response_format.json_schema")])
def test_a_response_format_that_cannot_be_honoured_gets_a_400_naming_it(server, response_format, param):
    reply = server.post({"model": server.model, "messages": ASK, "response_format": response_format})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param


WEATHER = {"type": "object", "additionalProperties": False, "required": ["city"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "days": {"type": "integer", "minimum": 1,
                                                                               "maximum": 7}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "add", "parameters": {
             "type": "object", "required": ["a", "b"], "additionalProperties": False,
             "properties": {"a": {"type": "integer", "maximum": 99}, "b": {"type": "integer", "maximum": 99}}}}}]
WEATHER_IN_PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_choice_required_returns_a_call_whose_arguments_validate(server, stream):
    client = server.client()
    for seed in range(3):
        request = dict(model=server.model, messages=WEATHER_IN_PARIS, tools=TOOLS, tool_choice="required",
                       max_tokens=60, temperature=1.0, seed=seed)
        if stream:
            chunks = [chunk.choices[0] for chunk in client.chat.completions.create(stream=True, **request)]
            assert not "".join(choice.delta.content or "" for choice in chunks)  # no call leaks as text
            calls = [call for choice in chunks for call in choice.delta.tool_calls or []]
            finish = chunks[-1].finish_reason
        else:
            choice = client.chat.completions.create(**request).choices[0]
            calls, finish = choice.message.tool_calls, choice.finish_reason
            assert choice.message.content is None
        assert finish == "tool_calls" and len(calls) == 1 and calls[0].id.startswith("call_")
        schema = {tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS}[calls[0].function.name]
        jsonschema.validate(json.loads(calls[0].function.arguments), schema)


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid")  # as OpenAI's strict mode asks (else any other key may follow)
    name: str = Field(max_length=6)


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[Part] = Field(max_length=2)
    rush: bool | None = None


def test_a_tool_whose_parameters_refer_to_their_own_defs_is_called_with_valid_arguments(server):
    parameters = Order.model_json_schema()
    assert "$defs" in parameters
    tools = [{"type": "function", "function": {"name": "order", "parameters": parameters}}]
    for seed in range(3):
        choice = server.client().chat.completions.create(
            model=server.model, messages=[{"role": "user", "content": "Order two parts."}], tools=tools,
            tool_choice="required", max_tokens=80, temperature=1.0, seed=seed).choices[0]
        assert choice.finish_reason == "tool_calls", choice
        jsonschema.validate(json.loads(choice.message.tool_calls[0].function.arguments), parameters)


def test_a_named_tool_choice_calls_that_tool_and_a_tool_result_continues_the_conversation(server):
    client = server.client()
    first = client.chat.completions.create(model=server.model, messages=WEATHER_IN_PARIS, tools=TOOLS, max_tokens=60,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    history = WEATHER_IN_PARIS + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                                  {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    second = client.chat.completions.create(model=server.model, messages=history, tools=TOOLS, tool_choice="none",
                                            max_tokens=12)
    assert second.choices[0].finish_reason in ("stop", "length") and second.choices[0].message.tool_calls is None
    alone = client.chat.completions.create(model=server.model, messages=WEATHER_IN_PARIS, tools=TOOLS,
                                           tool_choice="none", max_tokens=1)
    assert second.usage.prompt_tokens > alone.usage.prompt_tokens + 20  # the call and its result are in the prompt


@pytest.mark.parametrize("change, param", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "x", "parameters": {"type": 5}}}]}, "tools"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": WEATHER_IN_PARIS + [{"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{oops"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "3"}]}, "messages[1].tool_calls[0].function.arguments")])
def test_tools_that_cannot_be_honoured_get_a_400_naming_the_field(server, change, param):
    reply = server.post({"model": server.model, "messages": WEATHER_IN_PARIS, "tools": TOOLS} | change)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param, reply.text


@pytest.mark.parametrize("server", ["optimum"], indirect=True)  # ovphi's own sampler
def test_logit_bias_reaches_the_decode_step_and_must_name_a_token(server, int4_ir):
    from transformers import AutoTokenizer

    token = AutoTokenizer.from_pretrained(int4_ir).encode("bar", add_special_tokens=False)[0]
    answer = server.client().chat.completions.create(model=server.model, messages=ASK, max_tokens=4,
                                                     logit_bias={str(token): 100}, extra_body={"ignore_eos": True})
    assert answer.choices[0].message.content.split() == ["bar"] * 4
    reply = server.post({"model": server.model, "messages": ASK, "logit_bias": {"99999": 5}})
    assert reply.status_code == 400 and "logit_bias names token 99999" in reply.json()["error"]["message"]


@pytest.mark.parametrize("server", ["optimum"], indirect=True)  # ovphi's own sampler
def test_logprobs_come_with_each_answer_token_streamed_or_not_and_end_where_a_stop_string_cuts(server):
    client = server.client()
    asked = {"model": server.model, "messages": ASK, "max_tokens": 12, "temperature": 0, "logprobs": True,
             "top_logprobs": 3, "extra_body": {"ignore_eos": True}}
    answer = client.chat.completions.create(**asked).choices[0]
    tokens = answer.logprobs.content
    assert len(tokens) == 12
    for token in tokens:  # greedy: each chosen token is its place's most likely one
        assert [other.logprob for other in token.top_logprobs] == sorted(
            (other.logprob for other in token.top_logprobs), reverse=True)
        assert len(token.top_logprobs) == 3 and token.top_logprobs[0].token == token.token
        assert token.logprob == token.top_logprobs[0].logprob <= 0
    text = b"".join(bytes(token.bytes or []) for token in tokens).decode("utf-8", "replace")
    assert text.lstrip() == answer.message.content.lstrip()  # the first token's word-start space is its own
    streamed = [chunk.choices[0].logprobs for chunk in client.chat.completions.create(**asked, stream=True)
                if chunk.choices and chunk.choices[0].logprobs]
    assert [token.token for part in streamed for token in part.content] == [token.token for token in tokens]
    stop = answer.message.content[len(answer.message.content) // 2:][:2]  # two characters from the middle
    cut = client.chat.completions.create(**asked | {"stop": [stop]}).choices[0]
    kept = cut.logprobs.content
    assert cut.message.content == answer.message.content[:answer.message.content.index(stop)]
    assert [token.token for token in kept] == [token.token for token in tokens[:len(kept)]] and len(kept) < 12


def ask_paint(int4_ir, red_image, tmp_path, *args, schema=PAINT):
    """`ovphi ask` about a red picture with --json-schema `schema`."""
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    red_image.save(tmp_path / "red.png")
    return subprocess.run([sys.executable, "-m", "ovphi", "ask", str(int4_ir), "--image", str(tmp_path / "red.png"),
                           "--no-cache", "--json-schema", str(tmp_path / "schema.json"), *args],
                          capture_output=True, text=True, timeout=300)


def test_ask_prints_json_valid_against_the_schema_file(int4_ir, red_image, tmp_path):
    done = ask_paint(int4_ir, red_image, tmp_path, "--temperature", "1", "--seed", "4")
    assert done.returncode == 0, done.stderr
    jsonschema.validate(json.loads(done.stdout), PAINT)


@pytest.mark.parametrize("backend", ["genai", "genai-batch"])
def test_ask_with_a_genai_engine_prints_json_valid_against_the_schema_file(int4_ir, red_image, tmp_path, backend):
    done = ask_paint(int4_ir, red_image, tmp_path, "--backend", backend, "--temperature", "1", "--seed", "4")
    assert done.returncode == 0, done.stderr
    jsonschema.validate(json.loads(done.stdout), PAINT)


def test_what_an_engine_cannot_constrain_is_refused_with_one_line(int4_ir, red_image, tmp_path):
    done = ask_paint(int4_ir, red_image, tmp_path, "--backend", "genai-stock")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "genai-stock engine cannot constrain an answer" in done.stderr
    done = ask_paint(int4_ir, red_image, tmp_path, "--backend", "genai", schema={"type": "string", "pattern": "^a+$"})
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "the schema keyword 'pattern' has no EBNF in ovphi" in done.stderr
    earlier = converted_before(int4_ir, "detokenizer", tmp_path / "earlier")  # its detokenizer holds pieces
    done = ask_paint(earlier, red_image, tmp_path, "--backend", "genai")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "detokenizer holds SentencePiece pieces" in done.stderr and "convert it again" in done.stderr


def test_ask_lists_each_answer_tokens_logprob_in_its_json(int4_ir, red_image, tmp_path):
    done = ask_paint(int4_ir, red_image, tmp_path, "--format", "json", "--logprobs", "2")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    tokens = answer["logprobs"]
    assert "".join(token["token"] for token in tokens).strip() == answer["answer"]  # JSON: no byte-split characters
    for token in tokens:  # the constraint chose them: the model's own favourites are often elsewhere
        assert len(token["top"]) == 2 and token["top"][0]["logprob"] >= max(token["logprob"], token["top"][1]["logprob"])
    refused = ask_paint(int4_ir, red_image, tmp_path, "--logprobs", "2")
    assert refused.returncode == 1 and refused.stderr.strip() == "ovphi ask: error: --logprobs needs --format json"
