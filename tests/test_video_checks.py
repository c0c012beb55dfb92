"""What the run would reject, validation reports first: step ranges, t0/t1, VAE factors and unseeded samplers in the
video pack, each a problem with a code, the node, the port and a hint, before a model is loaded."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from vdgraph.errors import Problem
from vdgraph.registry import Registry
from vdgraph.validate import validate
from vdgraph.workflow import load_workflow

T2VZ = str(REPO / "workflows" / "text2video_zero.json")
LONG = str(REPO / "workflows" / "text2video_zero_long.json")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.discover(folders=(), env={})


def errors(registry: Registry, workflow, inputs: dict | None = None) -> list[Problem]:
    return [p for p in validate(load_workflow(workflow), registry, inputs) if p.severity == "error"]


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


@pytest.mark.parametrize("path", [T2VZ, LONG])
def test_t1_at_or_past_steps_is_reported_in_the_users_terms(registry, path):
    problem = only(errors(registry, path, {"steps": 6}))
    assert (problem.code, problem.node, problem.port) == ("node.check", "steps", "t1")
    assert problem.message == "t1 (10) must be smaller than steps (6): it counts steps from the end"
    assert "workflow input 't1'" in problem.hint
    assert only(errors(registry, path, {"steps": 10})).port == "t1"
    assert errors(registry, path, {"steps": 11}) == []


@pytest.mark.parametrize("t0, t1", [(10, 10), (12, 10)])
def test_t0_not_below_t1(registry, t0, t1):
    problem = only(errors(registry, T2VZ, {"t0": t0, "t1": t1}))
    assert (problem.node, problem.port) == ("steps", "t0")
    assert problem.message == f"t0 ({t0}) must be smaller than t1 ({t1})"


@pytest.mark.parametrize("side", ["height", "width"])
def test_size_not_a_multiple_of_the_vae_factor(registry, side):
    problem = only(errors(registry, T2VZ, {side: 66}))  # shapes-64's VAE has factor 4
    assert (problem.node, problem.port) == ("noise", side)
    assert problem.message == f"{side} 66 is not a multiple of the VAE factor 4"
    assert problem.hint.startswith("use 64 or 68")


def test_vae_factor_from_a_model_folder_given_as_a_path(registry):
    folder = str(REPO / "nodes" / "vdgraph_shapes" / "model")
    assert only(errors(registry, T2VZ, {"model": folder, "height": 30})).port == "height"


def test_a_model_validation_cannot_see_is_left_to_the_run(registry):
    assert errors(registry, T2VZ, {"model": "memory://nowhere/model", "height": 30}) == []


def edited(path: str, change) -> dict:
    doc = json.loads(open(path).read())
    change(doc["nodes"])
    return doc


@pytest.mark.parametrize("sampler", ["ddpm", "euler_ancestral"])
def test_a_stochastic_sampler_without_an_rng(registry, sampler):
    doc = edited(T2VZ, lambda nodes: nodes["to_t1"]["in"].pop("rng"))
    problem = only(errors(registry, doc, {"sampler": sampler}))
    assert (problem.code, problem.node, problem.port) == ("node.check", "to_t1", "rng")
    assert "draws random numbers" in problem.message and "link an rng" in problem.hint
    assert errors(registry, doc, {"sampler": "ddim"}) == []


def test_eta_without_an_rng(registry):
    doc = edited(T2VZ, lambda nodes: nodes["final"]["in"].pop("rng"))
    problem = only(errors(registry, doc, {"eta": 0.5}))
    assert (problem.node, problem.port) == ("final", "rng") and "eta = 0.5" in problem.message


def test_denoise_indices_outside_the_schedule(registry):
    def change(nodes):
        nodes["to_t1"]["in"].pop("end")
        nodes["to_t1"]["params"]["end"] = 25

    problem = only(errors(registry, edited(T2VZ, change)))
    assert (problem.node, problem.port) == ("to_t1", "end")
    assert problem.message == "end = 25 (step 25) is outside a schedule of 20 steps"


def test_denoise_end_before_start(registry):
    def change(nodes):
        nodes["to_t1"]["in"].pop("end")
        nodes["to_t1"]["params"].update(start=8, end=3)

    problem = only(errors(registry, edited(T2VZ, change)))
    assert (problem.node, problem.port) == ("to_t1", "end") and "comes before start" in problem.message


def test_renoise_towards_less_noise(registry):
    def change(nodes):
        nodes["renoise"]["in"]["from_step"], nodes["renoise"]["in"]["to_step"] = "steps.t1_index", "steps.t0_index"

    problem = only(errors(registry, edited(T2VZ, change)))
    assert (problem.node, problem.port) == ("renoise", "to_step") and "less noise" in problem.message


def test_chunk_size_one(registry):
    problem = only(errors(registry, LONG, {"chunk_size": 2}) + errors(
        registry, edited(LONG, lambda nodes: nodes["final"]["in"].update(chunk_size="inputs.decode_chunk")),
        {"decode_chunk": 1}))
    assert (problem.node, problem.port) == ("final", "chunk_size")


def test_every_shipped_workflow_is_clean_with_its_defaults(registry):
    for path in sorted((REPO / "workflows").glob("*.json")):
        assert validate(load_workflow(str(path)), registry) == [], path.name


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_model_name_is_a_problem_before_running(registry, name):
    problem = only(errors(registry, T2VZ, {"model": name}))
    assert (problem.node, problem.port, problem.message) == ("model", "model", "the model name is empty")


@pytest.mark.parametrize("name, inputs", [("animatediff.json", {}),
                                          ("animatediff_controlnet.json", {"control_video": "in.mp4"})])
def test_a_shared_noise_share_with_a_mode_other_than_independent(registry, name, inputs):
    workflow = str(REPO / "workflows" / name)
    doc = edited(workflow, lambda nodes: nodes["noise"]["params"].update(mode="same"))
    problem = only(errors(registry, doc, {**inputs, "noise_shared": 0.5}))
    assert (problem.node, problem.port) == ("noise", "shared") and "mode 'independent' only" in problem.message
    assert errors(registry, doc, {**inputs, "noise_shared": 0.0}) == []
    assert errors(registry, workflow, {**inputs, "noise_shared": 0.5}) == []
