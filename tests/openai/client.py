"""Drives Halyard's OpenAI-compatible endpoint with the official `openai` package from PyPI,
for tests/openai_client.rs. Usage: client.py BASE_URL API_KEY MODEL. Prints one JSON object
with what the client read; any exception the client raises fails the run."""

import json
import sys

import openai

base_url, api_key, model = sys.argv[1:4]
client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)
out = {}

models = client.models.list()
out["models"] = [m.id for m in models.data]

done = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hello there"}]
)
out["text"] = done.choices[0].message.content
out["finish_reason"] = done.choices[0].finish_reason
out["usage"] = done.usage.total_tokens
out["object"] = done.object
out["model"] = done.model

chunks = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": "one two three"}],
    stream=True,
    stream_options={"include_usage": True},
)
pieces, reasons, usage = [], [], None
for chunk in chunks:
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            reasons.append(choice.finish_reason)
out["streamed"] = "".join(pieces)
out["stream_reasons"] = reasons
out["stream_usage"] = usage

tools = [{
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
    },
}]
asked = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": 'call lookup {"word": "halyard"}'}],
    tools=tools,
)
call = asked.choices[0].message.tool_calls[0]
out["tool_finish"] = asked.choices[0].finish_reason
out["tool_call"] = {"name": call.function.name, "arguments": json.loads(call.function.arguments)}

streamed_calls = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": 'call lookup {"word": "sheet"}'}],
    tools=tools,
    stream=True,
)
names = []
for chunk in streamed_calls:
    for choice in chunk.choices:
        for c in choice.delta.tool_calls or []:
            if c.function and c.function.name:
                names.append(c.function.name)
out["streamed_tool_calls"] = names

try:
    client.chat.completions.create(
        model="no-such/production/agent", messages=[{"role": "user", "content": "x"}]
    )
    out["unknown_model"] = "no error"
except openai.NotFoundError as e:
    out["unknown_model"] = {"status": e.status_code, "type": e.body.get("type") if isinstance(e.body, dict) else None}

bad = openai.OpenAI(base_url=base_url, api_key="abl_sk-not-a-key", max_retries=0, timeout=20)
try:
    bad.models.list()
    out["bad_key"] = "no error"
except openai.AuthenticationError as e:
    out["bad_key"] = {"status": e.status_code, "type": e.body.get("type") if isinstance(e.body, dict) else None}

print(json.dumps(out))
