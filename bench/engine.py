"""Engine overhead: what the executor and the validator cost on top of the nodes' own work.

    .venv/bin/python bench/engine.py [--nodes 500] [--validate-nodes 1000] [--repeat 7]

* executor overhead per node on a generated DAG of trivial nodes, cold (empty cache) and fully cached, against a
  peer in the same process: plain Python calling the same node functions in the same topological order. The
  executor figures include everything `Executor.run` does: validation, cache keys, cache lookups, events,
  immutability checks, cache stores, and one event listener (counting events, as a progress display would).
* validation time of a larger workflow, from JSON text to the list of problems (parse + validate).

Targets: under 100 microseconds of overhead per node, validation of 1,000 nodes under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

from vdgraph import Executor, Input, Node, Output, Registry
from vdgraph.context import RunContext
from vdgraph.validate import validate
from vdgraph.workflow import parse_text

MODULUS = 1_000_003


class Mix(Node):
    """Combines two integers: (a * 31 + b + salt) mod a prime."""

    id = "bench.mix"
    inputs = [Input("a", int, default=0), Input("b", int, default=0), Input("salt", int, default=0, ge=0)]
    outputs = [Output("value", int)]

    def run(self, ctx: RunContext, a: int, b: int, salt: int) -> int:
        return (a * 31 + b + salt) % MODULUS


def generate(count: int, seed: int = 0) -> dict:
    """A DAG where each node reads one or two earlier nodes; every node is needed by some output."""
    rng = random.Random(seed)
    nodes: dict[str, dict] = {}
    consumed: set[str] = set()
    for i in range(count):
        node: dict = {"type": "bench.mix", "params": {"salt": i}}
        if i > 0:
            sources = rng.sample(range(max(0, i - 20), i), k=min(2, i))
            node["in"] = {port: f"n{j}.value" for port, j in zip(("a", "b"), sources)}
            consumed.update(f"n{j}" for j in sources)
        nodes[f"n{i}"] = node
    outputs = {name: f"{name}.value" for name in nodes if name not in consumed}
    return {"vdgraph": 1, "name": f"bench-{count}", "nodes": nodes, "outputs": outputs}


def plain_python(doc: dict) -> dict[str, int]:
    """The peer: the same node functions called directly, in the executor's topological order."""
    node = Mix()
    values: dict[str, int] = {}
    for name, spec in doc["nodes"].items():  # generated in topological order
        kwargs = {"a": 0, "b": 0, **spec["params"]}
        for port, link in spec.get("in", {}).items():
            kwargs[port] = values[link.split(".")[0]]
        values[name] = node.run(None, **kwargs)  # type: ignore[arg-type]
    return {name: values[link.split(".")[0]] for name, link in doc["outputs"].items()}


def timed(work: Callable[[], object], repeat: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process) per repetition. CPU time is the steadier figure on a machine
    shared with other jobs: waiting for a core is not overhead of the engine."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--validate-nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    registry = Registry()
    registry.register(Mix)
    doc = generate(args.nodes)
    count = args.nodes

    expected = plain_python(doc)
    assert Executor(registry, device="cpu").run(doc).outputs == expected, "executor and peer disagree"

    events = [0]

    def listener(event: object) -> None:
        events[0] += 1

    peer = timed(lambda: plain_python(doc), args.repeat)
    cold = timed(lambda: Executor(registry, device="cpu", on_event=listener).run(doc), args.repeat)
    warm_executor = Executor(registry, device="cpu", on_event=listener)
    warm_executor.run(doc)
    cached = timed(lambda: warm_executor.run(doc), args.repeat)
    assert not warm_executor.run(doc).ran, "the second run must be fully cached"

    big = json.dumps(generate(args.validate_nodes, seed=1), indent=1)
    validation = timed(lambda: validate(parse_text(big, "bench.json"), registry), args.repeat)

    def per_node(samples: list[float]) -> tuple[float, float]:
        return min(samples) / count * 1e6, statistics.median(samples) / count * 1e6

    print(f"DAG of {count} trivial nodes, {len(doc['outputs'])} outputs; best / median of {args.repeat} runs, "
          f"wall time (CPU time of this process)")
    peer_best, peer_median = per_node(peer[0])
    peer_cpu, _ = per_node(peer[1])
    print(f"  plain Python peer       {peer_best:7.2f} / {peer_median:7.2f} us per node ({peer_cpu:.2f})")
    for label, (wall, cpu) in (("executor, cold", cold), ("executor, fully cached", cached)):
        best, median = per_node(wall)
        best_cpu, median_cpu = per_node(cpu)
        overhead = best - peer_best
        print(f"  {label:<23} {best:7.2f} / {median:7.2f} us per node ({best_cpu:.2f} / {median_cpu:.2f})"
              f"   overhead {overhead:6.2f} us/node ({best_cpu - peer_cpu:.2f}), {best / peer_best:5.1f}x the peer"
              f"   target < 100 us: {'ok' if overhead < 100 else 'MISSED'}")
    wall, cpu = validation
    best_ms, median_ms = min(wall) * 1e3, statistics.median(wall) * 1e3
    print(f"validation of {args.validate_nodes} nodes (parse JSON text + all checks): {best_ms:.1f} / "
          f"{median_ms:.1f} ms ({min(cpu) * 1e3:.1f} / {statistics.median(cpu) * 1e3:.1f})"
          f"   target < 100 ms: {'ok' if best_ms < 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
