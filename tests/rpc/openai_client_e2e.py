"""The OpenAI-compatible HTTP front end, driven by the real `openai` Python client (PyPI).

Started by tests/rpc/http_e2e.sh in a virtualenv that has `openai`. Environment (set by ctest):
TPSERVE_BIN, TPSERVE_FIXTURES, TPSERVE_MPIRUN; TPSERVE_OPENSSL (openssl, for the self-signed cert).

Every check compares against something outside the HTTP path: `tpserve generate --chat` ids, the
/tokenize count, the engine's Stats (Prometheus /metrics), or a property any greedy run must have.
"""
import asyncio
import os
import re
import signal
import subprocess
import tempfile
import time

import openai

from e2e_checks import check, finish, metric

try:  # the HTTP library the installed openai client is built on (newer releases: httpx2)
    import httpx2 as httpx
except ImportError:
    import httpx

BIN = os.environ["TPSERVE_BIN"]
FIXTURES = os.environ["TPSERVE_FIXTURES"]
MPIRUN = os.environ["TPSERVE_MPIRUN"].split()
MODEL = os.path.join(FIXTURES, "qwen2_tied")
MODEL_NAME = "qwen2_tied"
HELLO = [{"role": "user", "content": "Hello, who are you?"}]



class Server:
    """`mpirun -np N tpserve serve --port 0 --http-port 0 ...`, stopped with SIGTERM."""

    def __init__(self, np, *args, env=None, scheme="http"):
        environment = dict(os.environ, OPENBLAS_NUM_THREADS="1", **(env or {}))
        command = MPIRUN + ["-np", str(np), BIN, "serve", "--model", MODEL, "--port", "0",
                            "--http-port", "0", "--metrics-port", "0", *args]
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.stderr,
                                        stdin=subprocess.DEVNULL, env=environment, text=True)
        line = self.process.stdout.readline()
        match = re.search(r":(\d+) \(tp \d+, metrics port (\d+), http port (\d+), pid (\d+)", line)
        if not match:
            self.stop()
            self.stderr.seek(0)
            raise RuntimeError(f"serve did not start: {line!r} {self.stderr.read()[-2000:]!r}")
        self.grpc_port, self.metrics_port, self.http_port, self.rank0_pid = map(int, match.groups())
        self.base_url = f"{scheme}://127.0.0.1:{self.http_port}/v1"

    def client(self, **kwargs):
        kwargs.setdefault("api_key", "unused")
        kwargs.setdefault("max_retries", 0)
        return openai.OpenAI(base_url=self.base_url, **kwargs)

    def post(self, path, body):
        return httpx.post(f"http://127.0.0.1:{self.http_port}{path}", json=body).json()

    def metric(self, name):
        return metric(self.metrics_port, name)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def generate_chat_ids(np, max_tokens):
    """`tpserve generate --chat` of HELLO: the reference ids for greedy chat over HTTP."""
    out = subprocess.run(MPIRUN + ["-np", str(np), BIN, "generate", "--model", MODEL, "--prompt",
                                   HELLO[0]["content"], "--chat", "--max-tokens", str(max_tokens),
                                   "--ignore-eos"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    line = next(l for l in out.stdout.splitlines() if l.startswith("tokens: "))
    return [int(t) for t in line[len("tokens: "):].split(",")]


def greedy_chat_ids(client, max_tokens, **kwargs):
    reply = client.chat.completions.create(
        model=MODEL_NAME, messages=HELLO, temperature=0, max_tokens=max_tokens, logprobs=True,
        extra_body={"ignore_eos": True, "return_tokens_as_token_ids": True}, **kwargs)
    return [int(t.token.split(":")[1]) for t in reply.choices[0].logprobs.content], reply


def test_greedy_equals_generate(server, np):
    want = generate_chat_ids(np, 12)
    got, reply = greedy_chat_ids(server.client(), 12)
    check(f"greedy chat over HTTP = generate --chat ids (tp {np})", got == want, f"{got} vs {want}")
    return reply


def test_chat(server):
    client = server.client()
    reply = test_greedy_equals_generate(server, 1)
    choice = reply.choices[0]
    check("chat: id, created, model, object", reply.id.startswith("chatcmpl-") and reply.created > 0
          and reply.model == MODEL_NAME and reply.object == "chat.completion")
    check("chat: finish_reason length at max_tokens", choice.finish_reason == "length")
    tokens = server.post("/tokenize", {"messages": HELLO})
    check("chat: usage counts the rendered prompt and the tokens made",
          reply.usage.prompt_tokens == tokens["count"] and reply.usage.completion_tokens == 12
          and reply.usage.total_tokens == tokens["count"] + 12, f"{reply.usage} {tokens}")
    # Logprobs: the raw distribution's, so greedy's token is the top alternative, listed first.
    top = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, temperature=0,
                                         max_tokens=6, logprobs=True, top_logprobs=3,
                                         extra_body={"ignore_eos": True})
    content = top.choices[0].logprobs.content
    check("logprobs: one entry per token, 3 alternatives each",
          len(content) == 6 and all(len(t.top_logprobs) == 3 for t in content))
    check("logprobs: greedy's token is the best alternative, alternatives sorted",
          all(t.token == t.top_logprobs[0].token and abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6
              and t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob >= t.top_logprobs[2].logprob
              and t.logprob <= 0 for t in content))

    # Streaming: the role first, then content deltas that add up to the whole reply, then usage.
    whole = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, temperature=0,
                                           max_tokens=20, extra_body={"ignore_eos": True})
    chunks = list(client.chat.completions.create(
        model=MODEL_NAME, messages=HELLO, temperature=0, max_tokens=20, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    check("logprobs: absent unless asked", whole.choices[0].logprobs is None)
    check("stream: first chunk carries the role", chunks[0].choices[0].delta.role == "assistant")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check("stream: deltas add up to the whole reply", text == whole.choices[0].message.content,
          f"{text!r} vs {whole.choices[0].message.content!r}")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check("stream: one finish_reason, length", finishes == ["length"], str(finishes))
    check("stream: include_usage ends with usage and no choices",
          chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
          and all(c.usage is None for c in chunks[:-1]))

    # n = 2, sampled and seeded: two choices; the same seed gives the same text, another differs.
    def sampled(seed):
        r = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, temperature=1.0,
                                           max_tokens=16, n=2, seed=seed,
                                           extra_body={"ignore_eos": True})
        return [c.message.content for c in sorted(r.choices, key=lambda c: c.index)], r
    first, r = sampled(7)
    check("n=2: two choices, index 0 and 1", sorted(c.index for c in r.choices) == [0, 1])
    check("n=2: usage counts both", r.usage.completion_tokens == 32)
    check("seed: same seed, same text", sampled(7)[0] == first)
    check("seed: another seed, other text", sampled(8)[0] != first)

    # logit_bias: +100 forces a token at every step; -100 on greedy's first token bans it.
    greedy_ids, _ = greedy_chat_ids(client, 4)
    forced, _ = greedy_chat_ids(client, 4, logit_bias={"17": 100})
    check("logit_bias +100 forces the token", forced == [17] * 4, str(forced))
    banned, _ = greedy_chat_ids(client, 4, logit_bias={str(greedy_ids[0]): -100})
    check("logit_bias -100 bans greedy's token", banned[0] != greedy_ids[0], f"{banned} {greedy_ids}")

    # stop: a string from the middle of the greedy reply cuts the reply before it.
    full = whole.choices[0].message.content
    stop = next((full[i:i + 2] for i in range(3, len(full) - 2)
                 if full[i:i + 2].strip() and full.find(full[i:i + 2]) == i), None)
    if stop is None:
        check("stop: a stop string in the greedy reply", False, repr(full))
    else:
        cut = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, temperature=0,
                                             max_tokens=20, stop=[stop],
                                             extra_body={"ignore_eos": True})
        check("stop: reply cut before the stop string, finish_reason stop",
              cut.choices[0].message.content == full[:full.find(stop)]
              and cut.choices[0].finish_reason == "stop",
              f"{cut.choices[0].message.content!r} {stop!r} {full!r}")


def test_completions(server):
    client = server.client()
    ids = server.post("/tokenize", {"prompt": "The quick brown fox"})["tokens"]
    by_text = client.completions.create(model=MODEL_NAME, prompt="The quick brown fox",
                                        max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    by_ids = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=8, temperature=0,
                                       extra_body={"ignore_eos": True})
    check("completions: text and its token ids give the same text",
          by_text.choices[0].text == by_ids.choices[0].text and by_text.object == "text_completion")
    check("completions: usage", by_text.usage.prompt_tokens == len(ids)
          and by_text.usage.completion_tokens == 8)
    echo = client.completions.create(model=MODEL_NAME, prompt="The quick brown fox", max_tokens=8,
                                     temperature=0, echo=True, extra_body={"ignore_eos": True})
    check("completions: echo puts the prompt first",
          echo.choices[0].text == "The quick brown fox" + by_text.choices[0].text)
    many = client.completions.create(model=MODEL_NAME, prompt=["The quick brown fox", "Hello"],
                                     max_tokens=8, temperature=0, n=2,
                                     extra_body={"ignore_eos": True})
    texts = {c.index: c.text for c in many.choices}
    check("completions: two prompts x n=2 = choices 0..3, prompt-major",
          sorted(texts) == [0, 1, 2, 3] and texts[0] == texts[1] == by_text.choices[0].text
          and texts[2] == texts[3] and many.usage.completion_tokens == 32)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL_NAME, prompt="The quick brown fox", max_tokens=8, temperature=0, stream=True,
        extra_body={"ignore_eos": True}) if c.choices)
    check("completions: stream adds up to the whole", streamed == by_text.choices[0].text)
    lp = client.completions.create(model=MODEL_NAME, prompt="The quick brown fox", max_tokens=4,
                                   temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    logprobs = lp.choices[0].logprobs
    check("completions: logprobs tokens, token_logprobs, top_logprobs of 2",
          len(logprobs.tokens) == 4 and len(logprobs.token_logprobs) == 4
          and all(len(t) == 2 for t in logprobs.top_logprobs)
          and "".join(logprobs.tokens) == lp.choices[0].text)
    models = client.models.list()
    check("models: lists the served model", [m.id for m in models.data] == [MODEL_NAME])


def test_errors(server):
    client = server.client()
    cases = [
        ("temperature -1", dict(temperature=-1), "temperature"),
        ("tools refused by name", dict(tools=[{"type": "function", "function": {"name": "f"}}]), "tools"),
        ("response_format json refused", dict(response_format={"type": "json_object"}), "response_format"),
        ("n over the limit", dict(n=1000), "n"),
        ("max_tokens past the context", dict(max_tokens=100000), "max_tokens"),
        ("stop too many", dict(stop=[str(i) for i in range(40)]), "stop"),
    ]
    for label, kwargs, param in cases:
        try:
            client.chat.completions.create(model=MODEL_NAME, messages=HELLO, **kwargs)
            check(f"400: {label}", False, "succeeded")
        except openai.BadRequestError as e:
            check(f"400: {label} (param {param})", e.status_code == 400 and e.body["param"] == param
                  and param in e.body["message"], str(e.body))
    try:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "bot", "content": "x"}])
        check("400: bad role", False)
    except openai.BadRequestError as e:
        check("400: bad role names messages[0].role", "messages[0].role" in e.message, e.message)
    # Unknown fields are ignored, as vLLM ignores them.
    reply = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=2,
                                           extra_body={"no_such_field": 1})
    check("unknown fields ignored", reply.usage.completion_tokens <= 2)
    # vLLM's priority extra is accepted (lower first, as vLLM has it); a non-integer is a 400.
    reply = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=2,
                                           extra_body={"priority": -3})
    check("priority accepted", reply.usage.completion_tokens <= 2)
    try:
        client.chat.completions.create(model=MODEL_NAME, messages=HELLO, extra_body={"priority": "high"})
        check("400: priority as a string", False, "succeeded")
    except openai.BadRequestError as e:
        check("400: priority as a string (param priority)", e.body["param"] == "priority", str(e.body))
    try:
        client.chat.completions.create(model="other-model", messages=HELLO)
        check("404: unknown model", False)
    except openai.NotFoundError as e:
        check("404: unknown model", e.status_code == 404)
    # Shapes the openai client would not send: by hand, each a 400 naming the field.
    url = server.base_url + "/chat/completions"
    for label, body, param, words in [
        ("image part", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages", "text parts only"),
        ("top_logprobs without logprobs", {"messages": HELLO, "top_logprobs": 2}, "top_logprobs",
         "needs logprobs"),
        ("temperature as a string", {"messages": HELLO, "temperature": "hot"}, "temperature",
         "expected a number"),
        ("no messages", {"model": MODEL_NAME}, "messages", "missing"),
        ("empty messages", {"messages": []}, "messages", "empty"),
        ("continuous usage", {"messages": HELLO, "stream": True,
                              "stream_options": {"continuous_usage_stats": True}},
         "stream_options", "not supported"),
        ("logit_bias outside the vocabulary", {"messages": HELLO, "logit_bias": {"99999": 5}},
         "logit_bias", "outside the vocabulary"),
        ("logit_bias over 100", {"messages": HELLO, "logit_bias": {"1": 101}}, "logit_bias",
         "[-100, 100]"),
        ("logit_bias key not an id", {"messages": HELLO, "logit_bias": {"x": 1}}, "logit_bias",
         "token id"),
    ]:
        raw = httpx.post(url, json=body)
        error = raw.json().get("error", {})
        check(f"400: {label}", raw.status_code == 400 and error.get("param") == param
              and words in error.get("message", ""), raw.text)
    parts = httpx.post(url, json={"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Hello, who are you?"}]}], "max_tokens": 1}).json()
    check("content as text parts = the same prompt as a string",
          parts["usage"]["prompt_tokens"] == server.post("/tokenize", {"messages": HELLO})["count"])
    raw = httpx.post(server.base_url + "/chat/completions", content=b"{not json")
    check("400: a body that is not JSON", raw.status_code == 400
          and raw.json()["error"]["type"] == "invalid_request_error")
    raw = httpx.post(server.base_url + "/chat/completions",
                     content=b'{"messages": [], "temperature": 1e999}')
    check("400: a number past double range (nlohmann's out_of_range, not parse_error)",
          raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"], raw.text)
    raw = httpx.post(server.base_url + "/chat/completions", content=b"x" * (5 << 20))
    check("413: a body over --max-message-mib", raw.status_code == 413 and "error" in raw.json())


def test_disconnect_frees_kv(server):
    """Read two chunks of a long stream, close it: the request is dropped and its KV freed."""
    generated_before = server.metric("tpserve_generated_tokens_total")
    client = server.client()
    stream = client.chat.completions.create(model=MODEL_NAME, messages=HELLO, temperature=0,
                                            max_tokens=200, stream=True,
                                            extra_body={"ignore_eos": True})
    for _, _ in zip(range(3), stream):
        pass
    check("disconnect: KV blocks in use while streaming", server.metric("tpserve_kv_blocks_used") > 0)
    stream.close()
    deadline = time.time() + 10
    while time.time() < deadline and (server.metric("tpserve_kv_blocks_used") > 0
                                      or server.metric("tpserve_requests_in_flight") > 0):
        time.sleep(0.05)
    made = server.metric("tpserve_generated_tokens_total") - generated_before
    check("disconnect: KV blocks freed and the request dropped before its 200 tokens",
          server.metric("tpserve_kv_blocks_used") == 0 and made < 200, f"{made} tokens made")


def test_queue_full_and_drain(server):
    """--max-queued 2: a third request is 429 (RateLimitError); SIGTERM: new ones are 503."""
    client = server.client()
    long_streams = [client.chat.completions.create(
        model=MODEL_NAME, messages=HELLO, temperature=0, max_tokens=150, stream=True,
        extra_body={"ignore_eos": True}) for _ in range(2)]
    for stream in long_streams:
        next(iter(stream))
    try:
        client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=2)
        check("429: queue full", False, "succeeded")
    except openai.RateLimitError as e:
        check("429: queue full raises RateLimitError", e.status_code == 429, str(e.body))
    # To rank 0: SIGTERM to mpirun itself would kill the ranks a second later, without a drain.
    os.kill(server.rank0_pid, signal.SIGTERM)
    deadline = time.time() + 10
    while time.time() < deadline and httpx.get(
            f"http://127.0.0.1:{server.http_port}/health").status_code == 200:
        time.sleep(0.05)
    check("drain: /health is 503", httpx.get(f"http://127.0.0.1:{server.http_port}/health").status_code == 503)
    try:
        client.chat.completions.create(model=MODEL_NAME, messages=HELLO, max_tokens=2)
        check("503 while draining", False, "succeeded")
    except openai.APIStatusError as e:
        check("503 while draining raises APIStatusError", e.status_code == 503, str(e))
    finished = ["".join(c.choices[0].finish_reason or "" for c in s if c.choices) for s in long_streams]
    check("drain: in-flight streams finish", finished == ["length", "length"], str(finished))


async def many_streams(server, count):
    """`count` streams open at once: each waits, after its first chunk, until all have one."""
    opened = 0
    all_open = asyncio.Event()
    limits = httpx.Limits(max_connections=count + 16, max_keepalive_connections=count + 16)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", http_client=http,
                                    max_retries=0)

        async def one(i):
            nonlocal opened
            stream = await client.chat.completions.create(
                model=MODEL_NAME, messages=[{"role": "user", "content": f"Stream {i}"}],
                temperature=0, max_tokens=4, stream=True, extra_body={"ignore_eos": True})
            pieces = []
            async for chunk in stream:
                if pieces == []:
                    opened += 1
                    if opened == count:
                        all_open.set()
                    await asyncio.wait_for(all_open.wait(), 60)
                pieces.append(chunk)
            return pieces[-1].choices[0].finish_reason

        return await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


def test_512_streams(server):
    start = time.time()
    results = asyncio.run(many_streams(server, 512))
    good = sum(1 for r in results if r == "length")
    errors = [r for r in results if r != "length"][:3]
    check(f"512 concurrent SSE streams open at once and complete ({time.time() - start:.1f} s)",
          good == 512, f"{good} completed; {errors}")
    if good != 512:  # what the server said, and whether it is still running
        server.stderr.seek(0)
        print(f"  serve {'running' if server.process.poll() is None else 'exited ' + str(server.process.poll())};"
              f" its stderr ends: {server.stderr.read()[-1500:].decode(errors='replace')}", flush=True)


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run([os.environ.get("TPSERVE_OPENSSL", "openssl"), "req", "-x509", "-newkey",
                    "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def test_key_and_tls(directory):
    cert, key = make_cert(directory)
    server = Server(1, "--tls-cert", cert, "--tls-key", key, env={"TPSERVE_API_KEY": "s3cret"},
                    scheme="https")
    try:
        with httpx.Client(verify=cert) as http:
            reply = server.client(api_key="s3cret", http_client=http).chat.completions.create(
                model=MODEL_NAME, messages=HELLO, max_tokens=3)
            check("HTTPS with the right key (TPSERVE_API_KEY) succeeds", reply.usage.completion_tokens <= 3)
            try:
                server.client(api_key="nope", http_client=http).models.list()
                check("401: wrong key", False, "succeeded")
            except openai.AuthenticationError as e:
                check("401: wrong key raises AuthenticationError", e.status_code == 401)
            # The openai client always sends a key; without one, by hand.
            bare = http.post(server.base_url + "/chat/completions", json={"messages": HELLO})
            check("401: no key", bare.status_code == 401
                  and bare.json()["error"]["type"] == "authentication_error", bare.text)
            health = http.get(f"https://127.0.0.1:{server.http_port}/health")
            check("health stays open without a key", health.status_code == 200,
                  f"{health.status_code} {health.text}")
            page = http.get(f"https://127.0.0.1:{server.http_port}/")
            check("the chat page is served without a key",
                  page.status_code == 200 and "<title>tpserve chat</title>" in page.text,
                  f"{page.status_code} {page.text[:200]}")
        try:
            httpx.get(f"https://127.0.0.1:{server.http_port}/health")
            check("an unknown certificate is refused by a verifying client", False)
        except httpx.ConnectError:
            check("an unknown certificate is refused by a verifying client", True)
    finally:
        server.stop()


def main():
    with tempfile.TemporaryDirectory() as directory:
        server = Server(1, "--max-queued", "600", "--max-seqs", "64")
        try:
            test_chat(server)
            test_completions(server)
            test_errors(server)
            test_512_streams(server)
        finally:
            server.stop()
        # Two ranks, every step 20 ms slower on rank 1: long requests stay in flight.
        server = Server(2, "--max-queued", "2", "--drain-timeout", "30",
                        env={"TPSERVE_FAULT_STEP_DELAY_MS": "20"})
        try:
            test_greedy_equals_generate(server, 2)
            test_disconnect_frees_kv(server)
            test_queue_full_and_drain(server)
        finally:
            server.stop()
        test_key_and_tls(directory)
    finish()


if __name__ == "__main__":
    main()
