"""JSON schemas written as xgrammar EBNF, the grammar openvino.genai's engines constrain an answer to
(`StructuredOutputConfig(grammar=...)`).

genai's own `json_schema=` let a raw control character into a string one answer in twenty (tiny IR), so ovphi
writes the grammar itself, compact as the OpenAI API answers, for the schema keywords below; any other keyword
is refused by name. A string's characters exclude control characters and `<` (written `\\u003c`), so none of
the model's special tokens (`<s>`, `<|end|>`, ...) can print inside one. Objects have only their declared
properties, in their declared order; values stay valid against the schema either way.
"""
import json
import math

from ..errors import OvphiError

ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
               "readOnly", "writeOnly", "$defs", "definitions", "discriminator"}
KEYWORDS = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "string": {"minLength", "maxLength"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": set(), "boolean": set(), "null": set(),
}
TYPED_KEYWORDS = set().union(*KEYWORDS.values())
COMBINATIONS = {"type", "enum", "const", "anyOf", "allOf", "$ref"}
BASE_RULES = r'''string ::= "\"" char* "\""
char ::= [^"\\<\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
integer ::= "-"? ("0" | [1-9] [0-9]*)
number ::= integer ("." [0-9]+)? ([eE] [+-]? [0-9]+)?
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" (string ":" value ("," string ":" value)*)? "}"
array ::= "[" (value ("," value)*)? "]"
'''


def text_literal(text):
    """An EBNF literal matching `text`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value):
    """An EBNF literal matching `value` written as compact JSON."""
    return text_literal(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def same_length(low, high):
    """EBNF sequences matching the decimal numbers from `low` to `high`, digit strings of one length."""
    if not low:
        return [[]]
    if low[0] == high[0]:
        return [[f'"{low[0]}"'] + rest for rest in same_length(low[1:], high[1:])]
    width = len(low) - 1
    tail = [f"[0-9]{{{width}}}"] if width else []
    low_whole, high_whole = low[1:] == "0" * width, high[1:] == "9" * width
    first, last = int(low[0]) + (not low_whole), int(high[0]) - (not high_whole)
    sequences = [] if low_whole else [[f'"{low[0]}"'] + rest for rest in same_length(low[1:], "9" * width)]
    if first <= last:
        sequences.append([f"[{first}-{last}]"] + tail)
    if not high_whole:
        sequences += [[f'"{high[0]}"'] + rest for rest in same_length("0" * width, high[1:])]
    return sequences


def natural_range(low, high=None):
    """EBNF alternatives matching the whole numbers from `low` >= 0 to `high` (None: no end), no leading zeros."""
    if high is not None and low > high:
        return []
    if high is None:
        width = len(str(low))
        return natural_range(low, 10 ** width - 1) + [f"[1-9] [0-9]{{{width},}}"]
    if len(str(low)) < len(str(high)):
        split = 10 ** len(str(low)) - 1
        return natural_range(low, split) + natural_range(split + 1, high)
    return [" ".join(sequence) or '""' for sequence in same_length(str(low), str(high))]


def integer_range(low, high):
    """An EBNF expression matching the integers from `low` to `high` (either None: no bound)."""
    alternatives = []
    if high is None or high >= 0:
        alternatives += natural_range(max(low or 0, 0), high)
    if low is None or low < 0:
        alternatives += [f'"-" ({item})' for item in natural_range(max(-high, 1) if high is not None else 1,
                                                                   None if low is None else -low)]
    if not alternatives:
        raise OvphiError(f"no integer lies between {low} and {high}")
    return " | ".join(f"({item})" for item in alternatives)


def integer_bounds(schema):
    """(lowest, highest) integer the schema allows; None where unbounded."""
    low = high = None
    if "minimum" in schema:
        low = math.ceil(schema["minimum"])
    if "exclusiveMinimum" in schema:
        low = max(low if low is not None else -math.inf, math.floor(schema["exclusiveMinimum"]) + 1)
    if "maximum" in schema:
        high = math.floor(schema["maximum"])
    if "exclusiveMaximum" in schema:
        high = min(high if high is not None else math.inf, math.ceil(schema["exclusiveMaximum"]) - 1)
    return low, high


def count(schema, keyword, default):
    value = schema.get(keyword, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise OvphiError(f"'{keyword}' must be a whole number >= 0, not {value!r}")
    return value


def repeated(item, least, most):
    """`item` from `least` to `most` (None: no end) times."""
    if most is not None and least > most:
        raise OvphiError(f"no length lies between {least} and {most}")
    return f"{item}{{{least},{'' if most is None else most}}}"


class JsonEbnf:
    """The EBNF rules of JSON values valid against the schemas given to value(); grammar() writes them out."""

    def __init__(self):
        self.rules = {}
        self.references = {}

    def rule(self, expression):
        """A new rule for `expression`; returns its name."""
        name = f"r{len(self.rules)}"
        self.rules[name] = expression
        return name

    def value(self, schema, document=None):
        """An EBNF expression for JSON valid against `schema` (a dict, or True for anything); `document` is
        the schema $refs point into (default: `schema`). An OvphiError names a keyword it cannot write."""
        document = schema if document is None else document
        if schema is True or schema == {}:
            return "value"
        if not isinstance(schema, dict):
            raise OvphiError(f"a schema must be an object or true, not {json.dumps(schema)}")
        unknown = set(schema) - ANNOTATIONS - COMBINATIONS - TYPED_KEYWORDS
        if unknown:
            raise OvphiError(f"the schema keyword '{sorted(unknown)[0]}' has no EBNF in ovphi")
        if "$ref" in schema:
            return self.reference(schema["$ref"], document)
        if "const" in schema:
            return literal(schema["const"])
        for keyword in ("enum", "anyOf"):
            if schema.get(keyword) == []:
                raise OvphiError(f"an empty '{keyword}' allows no value")
        if "enum" in schema:
            return " | ".join(literal(item) for item in schema["enum"])
        if "anyOf" in schema:
            return " | ".join(f"({self.value(item, document)})" for item in schema["anyOf"])
        if "allOf" in schema:
            if len(schema["allOf"]) != 1:
                raise OvphiError("an 'allOf' of more than one schema has no EBNF in ovphi")
            return self.value(schema["allOf"][0], document)
        types = schema.get("type", list(KEYWORDS))
        types = [types] if isinstance(types, str) else types
        if not types or any(kind not in KEYWORDS for kind in types):
            raise OvphiError(f"unknown schema type {json.dumps(schema.get('type'))}")
        bounds = set(schema) & KEYWORDS["integer"]
        if "number" in types and bounds:
            raise OvphiError(f"a number's '{sorted(bounds)[0]}' has no EBNF in ovphi (an integer's has)")
        for keyword in set(schema) & TYPED_KEYWORDS:
            if not any(keyword in KEYWORDS[kind] for kind in types):
                raise OvphiError(f"'{keyword}' does not apply to type {json.dumps(schema.get('type'))}")
        if len(types) == 1 and not set(schema) & TYPED_KEYWORDS:
            return types[0]
        return " | ".join(f"({self.typed(kind, schema, document)})" for kind in types)

    def reference(self, target, document):
        """The rule of a local $ref ('#/$defs/Name', '#/definitions/Name', '#')."""
        key = (id(document), target)
        if key not in self.references:
            if not isinstance(target, str) or not target.startswith("#"):
                raise OvphiError(f"only local $refs have EBNF in ovphi, not {target!r}")
            schema = document
            for part in filter(None, target[1:].split("/")):
                part = part.replace("~1", "/").replace("~0", "~")
                if not isinstance(schema, dict) or part not in schema:
                    raise OvphiError(f"the $ref {target!r} points to nothing")
                schema = schema[part]
            self.references[key] = name = self.rule("")
            self.rules[name] = self.value(schema, document)
        return self.references[key]

    def typed(self, kind, schema, document):
        """The expression of one `type` with its keywords."""
        if kind == "object":
            return self.object(schema, document)
        if kind == "array":
            least, most = count(schema, "minItems", 0), count(schema, "maxItems", None)
            item = self.rule(self.value(schema.get("items", True), document))
            if most == 0:
                return '"[" "]"'
            rest = repeated(f'("," {item})', max(least - 1, 0), None if most is None else most - 1)
            listed = f'"[" {item} {rest} "]"'
            return listed if least else f'"[" "]" | {listed}'
        if kind == "string":
            return f'"\\"" {repeated("char", count(schema, "minLength", 0), count(schema, "maxLength", None))} "\\""'
        if kind == "integer":
            return integer_range(*integer_bounds(schema))
        return kind

    def object(self, schema, document):
        """Only the declared properties, in order, each required one present; commas between them."""
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        missing = required - set(properties)
        if missing:
            raise OvphiError(f"the required property '{sorted(missing)[0]}' has no schema under 'properties'")
        if not properties:
            return '"{" "}"' if schema.get("additionalProperties", True) is False else "object"
        pairs = [(f'{literal(name)} ":" {self.rule(self.value(value, document))}', name in required)
                 for name, value in properties.items()]
        after = '""'  # the properties from here on, after one has been written
        first = '""'  # the same when none has been written yet
        for pair, needed in reversed(pairs):
            later = self.rule(after)
            first = self.rule(f'{pair} {later}' if needed else f'{pair} {later} | {first}')
            after = f'"," {pair} {later}' if needed else f'("," {pair})? {later}'
        return f'"{{" {first} "}}"'

    def grammar(self, root):
        """The whole grammar, `root` an expression over the rules made so far."""
        return "\n".join([f"root ::= {root}"] + [f"{name} ::= {body}" for name, body in self.rules.items()]
                         ) + "\n" + BASE_RULES


def schema_ebnf(schema):
    """The xgrammar EBNF of compact JSON valid against `schema` (a dict); an OvphiError naming what it cannot
    write."""
    writer = JsonEbnf()
    root = writer.value(schema)
    return writer.grammar(root)
