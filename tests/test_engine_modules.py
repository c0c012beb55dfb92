"""vdgraph.modules: a module's tensors listed once, as torch lists them; the engine's checks that rely on it."""

from __future__ import annotations

import torch

from vdgraph.cache import sizeof
from vdgraph.immutability import changed_inputs, input_versions
from vdgraph.modules import module_tensors


def model() -> torch.nn.Module:
    shared = torch.nn.Linear(3, 3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), shared,
                              torch.nn.Sequential(shared, torch.nn.LayerNorm(3)))
    net.register_buffer("scale", torch.ones(2))
    net[3].extra = torch.nn.Parameter(torch.zeros(5))
    return net


def test_the_tensors_of_a_module_are_its_parameters_and_buffers_in_order_each_once():
    net = model()
    parameters, buffers = module_tensors(net)
    assert [id(p) for p in parameters] == [id(p) for p in net.parameters()]
    assert [id(b) for b in buffers] == [id(b) for b in net.buffers()]
    assert module_tensors(net) is module_tensors(net)  # listed once per module


def test_the_memory_cache_counts_a_module_by_its_tensors():
    net = model()
    expected = sum(t.untyped_storage().nbytes() for t in (*net.parameters(), *net.buffers()))
    assert sizeof(net) == expected


def test_a_parameter_changed_in_place_is_still_caught():
    net = model()
    versions = input_versions({"model": net})
    with torch.no_grad():
        net[3].extra.add_(1)
    assert changed_inputs(versions) == ["model"]
