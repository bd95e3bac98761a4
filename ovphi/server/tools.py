"""Tool calls for a model without a native format (Phi-3.5-vision has none): the tools are described in a
system message, the answer is constrained to a JSON call `{"name": ..., "arguments": {...}}` of one of them
(or, with tool_choice auto, to that or plain text that does not start with `{`), and a call in the answer
becomes the response's tool_calls. Earlier calls and their results are rendered back as text the same way,
so a repeated history matches what the model generated."""
import json
import uuid

from ..runtime.constraint import check_grammar, json_lark, with_ebnf
from ..runtime.json_ebnf import JsonEbnf, text_literal

# an answer that is not a call: anything that does not open a JSON object (Lark, EBNF)
FREE_TEXT = r"/[^{](.|\n)*/"
FREE_TEXT_EBNF = '[^{] ([^{] | "{")*'


def chosen_tools(tools, choice):
    """The tools the answer may call under tool_choice (none: no tool; a named function: that one)."""
    if not tools or choice == "none":
        return []
    if not isinstance(choice, str) and choice is not None:
        return [tool for tool in tools if tool.function.name == choice.function.name]
    return list(tools)


def must_call(choice):
    return choice == "required" or not isinstance(choice, str) and choice is not None


def call_opening(tool):
    """What a call of `tool` starts with, up to its arguments (compact JSON, as call_text writes it)."""
    return '{"name":' + json.dumps(tool.function.name, ensure_ascii=False) + ',"arguments":'


def parameters_of(tool):
    return tool.function.parameters or {"type": "object"}


def tool_grammar(tools, choice):
    """The Grammar of an answer under tool_choice (None when no tool may be called); an OvphiError if a tool's
    parameters are not a JSON schema llguidance can compile. Each call's arguments are a JSON schema of their
    own, so that a `$ref` in them points into the tool's parameters."""
    chosen = chosen_tools(tools, choice)
    if not chosen:
        return None
    call = "call: " + " | ".join(f'{json.dumps(call_opening(tool))} {json_lark(parameters_of(tool))} "}}"'
                                 for tool in chosen)
    grammar = f"start: call\n{call}\n" if must_call(choice) else f"start: call | text\ntext: {FREE_TEXT}\n{call}\n"
    check_grammar(grammar, "the tools' parameters")
    return with_ebnf(grammar, lambda: tool_ebnf(chosen, must_call(choice)))


def tool_ebnf(chosen, must):
    """The xgrammar EBNF of the same answer: a call of one of the chosen tools, or (unless `must`) free text."""
    writer = JsonEbnf()
    call = " | ".join(f'({text_literal(call_opening(tool))} ({writer.value(parameters_of(tool))}) "}}")'
                      for tool in chosen)
    return writer.grammar(call if must else f"{FREE_TEXT_EBNF} | {call}")


def tools_prompt(tools, choice):
    """The system message that describes the tools and how to call one."""
    described = "\n".join(json.dumps({"name": tool.function.name, "description": tool.function.description or "",
                                      "parameters": parameters_of(tool)})
                          for tool in chosen_tools(tools, choice))
    how = ("Answer with a call of one of these tools" if must_call(choice) else
           "To call one of these tools, answer with the call alone; otherwise answer in plain text")
    return (f'{how}. A call is one JSON object: {{"name": the tool\'s name, "arguments": its arguments}}.'
            f"\nTools:\n{described}")


def call_text(name, arguments):
    """A call as the model writes it (compact JSON)."""
    return json.dumps({"name": name, "arguments": arguments}, separators=(",", ":"), ensure_ascii=False)


def tool_result_text(call_id, content):
    return f"Result of tool call {call_id}:\n{content}"


def tool_call_of(answer, tools):
    """The response's tool call, in OpenAI's shape, if the answer is a call of one of `tools`; else None."""
    if not tools or not answer.startswith("{"):
        return None
    try:
        call = json.loads(answer)
    except ValueError:  # cut short by max_tokens or a stop string
        return None
    if not isinstance(call, dict) or call.get("name") not in {tool.function.name for tool in tools} \
            or not isinstance(call.get("arguments"), dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
