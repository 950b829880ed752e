#!/usr/bin/env python3
"""The llama-server side of make bench-serve: C client threads, each making 2 requests of 64 tokens
(ignore_eos) in turn to /completion, first whole (tokens/s, latency p50/p99), then streamed (tokens/s,
time to first token p50/p99). Same prompts as tests/bench_serve.c, without a prefix (llama-server has none).
Usage: bench_serve_http.py URL CLIENTS..."""
import json, sys, threading, time, urllib.request

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a bird"]
REQS, NTOK = 2, 64


def call(url, prompt, stream):
    body = json.dumps({"prompt": prompt, "n_predict": NTOK, "ignore_eos": True, "temperature": 0,
                       "cache_prompt": False, "stream": stream}).encode()
    req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
    t0 = time.monotonic()
    first, n = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        if not stream:
            n = json.loads(r.read()).get("tokens_predicted", NTOK)
            first = time.monotonic() - t0
        else:
            for line in r:
                if not line.startswith(b"data: "):
                    continue
                d = json.loads(line[6:])
                if d.get("content") and first is None:
                    first = time.monotonic() - t0
                if d.get("content"):
                    n += 1
                if d.get("stop"):
                    break
    return n, first, time.monotonic() - t0


def pct(v, q):
    v = sorted(v)
    return v[int(q * (len(v) - 1) + 0.5)]


def main():
    url, counts = sys.argv[1], [int(x) for x in sys.argv[2:]] or [1, 4, 16, 64]
    print("%-8s %-8s %12s %12s %12s" % ("clients", "calls", "tokens/s", "p50 ms", "p99 ms"))
    for c in counts:
        for stream in (False, True):
            res = []
            lock = threading.Lock()

            def client(i):
                for r in range(REQS):
                    out = call(url, PROMPTS[(i + r) % 4], stream)
                    with lock:
                        res.append(out)
            th = [threading.Thread(target=client, args=(i,)) for i in range(c)]
            t0 = time.monotonic()
            for t in th:
                t.start()
            for t in th:
                t.join()
            wall = time.monotonic() - t0
            tok = sum(r[0] for r in res)
            v = [1e3 * (r[1] if stream else r[2]) for r in res]
            print("%-8d %-8s %12.1f %12.1f %12.1f" % (c, "stream" if stream else "generate", tok / wall, pct(v, 0.5),
                                                      pct(v, 0.99)), flush=True)


main()
