"""Drives llmhop with the official `openai` Python SDK (used by tests/sdk.rs).

Usage: python3 tests/sdk/openai_client.py BASE_URL [API_KEY]

BASE_URL is the router's origin (http://127.0.0.1:PORT). The fake upstream
behind the router answers model "sdk-model" with fixed texts; every check
below compares against those texts. Prints one `ok <step>` line per check
and exits 1 on the first mismatch, 2 when the SDK is missing: a missing SDK
is a failure, never a skip.
"""

import sys

try:
    import openai
except ImportError:
    print("FAIL: the `openai` package is not installed (pip install openai)", file=sys.stderr)
    sys.exit(2)


def check(step, got, want):
    if got != want:
        print(f"FAIL {step}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {step}")


def main():
    base_url = sys.argv[1].rstrip("/") + "/v1"
    api_key = sys.argv[2] if len(sys.argv) > 2 else "unused"
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20)

    chat = client.chat.completions.create(
        model="sdk-model",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    check("chat.completions.create", chat.choices[0].message.content, "Hello from the fake upstream.")
    check("chat.model", chat.model, "sdk-model")

    stream = client.chat.completions.create(
        model="sdk-model",
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
    )
    pieces = []
    chunks = 0
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    check("chat.completions.create(stream=True) text", "".join(pieces), "one two three")
    check("chat.completions.create(stream=True) chunks", chunks >= 3, True)

    emb = client.embeddings.create(model="sdk-model", input=["a", "b"])
    check("embeddings.create count", len(emb.data), 2)
    check("embeddings.create vector", [round(x, 3) for x in emb.data[1].embedding], [0.5, 0.25, 0.125])

    models = sorted(m.id for m in client.models.list())
    check("models.list", models, ["other-model", "sdk-model"])

    try:
        client.chat.completions.create(model="no-such-model", messages=[])
        check("unknown model raises", "no error", "NotFoundError")
    except openai.NotFoundError as err:
        check("unknown model raises", err.code, "model_not_found")

    print("ALL OK")


if __name__ == "__main__":
    main()
