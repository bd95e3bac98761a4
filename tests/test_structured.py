"""`response_format` and `--json-schema` through a real server and the real CLI on the tiny INT4 IR: its
weights are random, so only the constraint can make an answer valid."""
import json
import subprocess
import sys

import jsonschema
import pytest
from pydantic import BaseModel, Field
from served import Served, data_url

PAINT = {"type": "object", "additionalProperties": False, "required": ["colour", "coats"],
         "properties": {"colour": {"enum": ["red", "green", "blue"]}, "coats": {"type": "integer", "minimum": 1,
                                                                                 "maximum": 3},
                        "note": {"type": "string", "maxLength": 8}}}
ASK = [{"role": "user", "content": "Describe the paint as JSON."}]


class Paint(BaseModel):
    colour: str = Field(max_length=8)
    coats: int = Field(ge=1, le=3)


@pytest.fixture(scope="module")
def server(int4_ir):
    served = Served(int4_ir, "--no-cache")
    served.model = int4_ir.name  # the folder name is the model's
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


@pytest.mark.parametrize("response_format, param", [
    ({"type": "yaml"}, "response_format.type"),
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
     "response_format.json_schema.schema"),
    ({"type": "json_schema", "json_schema": "paint"}, "response_format.json_schema")])
def test_a_response_format_that_cannot_be_honoured_gets_a_400_naming_it(server, response_format, param):
    reply = server.post({"model": server.model, "messages": ASK, "response_format": response_format})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param


def test_ask_prints_json_valid_against_the_schema_file(int4_ir, red_image, tmp_path):
    (tmp_path / "paint.json").write_text(json.dumps(PAINT))
    red_image.save(tmp_path / "red.png")
    done = subprocess.run([sys.executable, "-m", "ovphi", "ask", str(int4_ir), "--image", str(tmp_path / "red.png"),
                           "--no-cache", "--json-schema", str(tmp_path / "paint.json"), "--temperature", "1",
                           "--seed", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    jsonschema.validate(json.loads(done.stdout), PAINT)


def test_an_engine_that_cannot_constrain_refuses_a_schema_with_one_line(int4_ir, red_image, tmp_path):
    (tmp_path / "paint.json").write_text(json.dumps(PAINT))
    red_image.save(tmp_path / "red.png")
    done = subprocess.run([sys.executable, "-m", "ovphi", "ask", str(int4_ir), "--image", str(tmp_path / "red.png"),
                           "--no-cache", "--backend", "genai", "--json-schema", str(tmp_path / "paint.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "cannot constrain an answer to a JSON schema" in done.stderr
