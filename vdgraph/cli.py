"""The `vdgraph` command line: run, validate, nodes, schema, graph, inspect, models, serve.

Exit codes: 0 success; 1 invalid workflow or failed run; 2 usage error (bad option, bad --set syntax, unknown
device); 130 cancelled (Ctrl-C). A problem in the user's files or options is printed as a message, never as a
Python traceback (`--traceback` shows the one of a failing node, for node authors).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import io
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from vdgraph.context import CancelToken
from vdgraph.errors import Cancelled, NodeRunError, Problem, VdgraphError, WorkflowInvalid
from vdgraph.packs import LOCAL_NODES_ENV, NODES_PATH_ENV
from vdgraph.runtime import DeviceError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away (`| head`)


class UsageError(Exception):
    """A command-line mistake (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a lone surrogate in a value or a path prints escaped, never raises
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _library_progress_silenced(getattr(args, "quiet", False)):
            return args.command(args)
    except UsageError as exc:
        parser.exit(EXIT_USAGE, f"vdgraph: error: {exc}\n")
    except WorkflowInvalid as exc:
        _print_problems(exc.problems, getattr(args, "json", False))
        return EXIT_FAILED
    except Cancelled as exc:
        print(f"vdgraph: {exc}; {_kept(args)}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt as exc:  # PackImportInterrupted says which pack was being imported
        print(f"vdgraph: {exc or 'interrupted'}", file=sys.stderr)
        return EXIT_CANCELLED
    except NodeRunError as exc:
        print(f"vdgraph: {exc}", file=sys.stderr)
        if getattr(args, "traceback", False) and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        else:
            print(f"  ({_kept(args)}; --traceback shows where the node failed)", file=sys.stderr)
        return EXIT_FAILED
    except VdgraphError as exc:
        print(f"vdgraph: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, DeviceError) else EXIT_FAILED
    except BrokenPipeError:  # the reader of our output closed it: stop quietly, like other Unix tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # an output file that cannot be written, a full disk, an unreachable cache URL
        print(f"vdgraph: {exc}", file=sys.stderr)
        return EXIT_FAILED


# -- the parser -------------------------------------------------------------------------------------------------

_EXAMPLES = """\
examples:
  vdgraph run workflows/hello.json --set name=Ada --output-dir out
  vdgraph run workflows/text2video_zero.json --sweep seed=0..3 --sweep prompt=@prompts.txt
  vdgraph run workflow.json --cache ~/.cache/vdgraph --explain --events events.jsonl
  vdgraph validate workflows/*.json
  vdgraph nodes 'core.*'
  vdgraph schema -o vdgraph.schema.json
  vdgraph graph workflow.json --format mermaid
  vdgraph inspect out/clip.mp4
  vdgraph run --from out/clip.mp4
  vdgraph models
  vdgraph serve --port 8188
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vdgraph", description="Run and check node-graph workflows for video diffusion.", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    packs = argparse.ArgumentParser(add_help=False)
    group = packs.add_argument_group("node packs")
    group.add_argument("--nodes", action="append", default=[], metavar="DIR",
                       help=f"also load node packs from DIR (repeatable; adds to ${NODES_PATH_ENV} and the user "
                            "folder ~/.config/vdgraph/custom_nodes); a DIR that does not exist is an error")
    group.add_argument("--local-nodes", action="store_true", default=None,
                       help="also load node packs from ./custom_nodes of the working directory (off by default: "
                            f"a folder of someone else's workflows may ship code; {LOCAL_NODES_ENV}=1)")
    group.add_argument("--allow-override", action="store_true", default=None,
                       help="let a later pack replace a node id defined by an earlier one (VDGRAPH_ALLOW_OVERRIDE=1)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_run(commands, packs)
    _add_validate(commands, packs)
    _add_nodes(commands, packs)
    _add_schema(commands, packs)
    _add_graph(commands)
    _add_inspect(commands)
    _add_models(commands)
    _add_serve(commands, packs)
    return parser


def _kept(args: argparse.Namespace) -> str:
    """What survives a failed or cancelled run: with --cache the completed nodes are on disk and the next run
    resumes after them; without it they lived in this process's memory only."""
    if getattr(args, "cache", None):
        return "completed nodes stay in the --cache folder, so the next run with it resumes there"
    return "completed nodes are not kept (pass --cache DIR to resume the next run where this one stopped)"


def _command(commands: Any, name: str, parents: list, help: str, epilog: str) -> argparse.ArgumentParser:
    return commands.add_parser(name, parents=parents, help=help, description=help, epilog=epilog,
                               formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_run(commands: Any, packs: argparse.ArgumentParser) -> None:
    p = _command(commands, "run", [packs], "Validate a workflow, then run what its outputs need.", """\
examples:
  vdgraph run workflows/hello.json
  vdgraph run workflows/hello.json --set name=Ada --set width=640 --output greeting
  vdgraph run clip.json --device cuda:1 --dtype bfloat16 --cache s3://bucket/vdgraph-cache --explain

Ctrl-C cancels at the next step (with --cache the next run resumes there); press it twice to stop at once.""")
    p.add_argument("workflow", nargs="?", help="workflow file: a path or any fsspec URL (or --from FILE)")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="run the recipe an output file carries (its workflow and input values; --set changes "
                        "inputs): a PNG, MP4 or WebM vdgraph wrote, a PNG-frame folder, or a .recipe.json sidecar")
    _add_set(p)
    p.add_argument("--output", action="append", metavar="NAME", help="compute only this output (repeatable)")
    p.add_argument("--sweep", action="append", default=[], metavar="NAME=VALUES", dest="sweeps",
                   help="run once per value of a workflow input (repeatable: the grid of all of them), through one "
                        "executor: A..B (integers, A..B..STEP), @FILE (a value a line) or comma-separated values; "
                        "each job writes into its own folder under OUTPUT_DIR/<workflow>_sweep, with a grid "
                        "contact sheet of all results")
    p.add_argument("--output-dir", default="out", metavar="DIR",
                   help="the folder nodes write files into (default: ./out, created on the first write); a name "
                        "that is taken gets a counter (clip_00001.mp4) instead of replacing the file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (and PNG-frame folders vdgraph wrote) instead of adding a "
                        "counter to the new name; also lets --events replace its file")
    p.add_argument("--allow-outside-output-dir", action="store_true",
                   help="let the workflow write outside the output folder (absolute paths, URLs, '..'); by "
                        "default such a target is refused")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, else float32)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's own choice; 1 is fastest for small models on a "
                        "busy machine, where more threads contend with other jobs)")
    p.add_argument("--cache", metavar="DIR_OR_URL",
                   help="persistent cache of node outputs (tensors, JSON values, scheduler state; never models), "
                        "reused by later runs and by a run resuming after Ctrl-C: a folder or any fsspec URL. "
                        "Corrupt entries are recomputed; a failed write is a warning")
    p.add_argument("--events", metavar="FILE", help="write every event as a JSON line to FILE (an existing file "
                                                    "is replaced only with --overwrite; never a folder, a link or "
                                                    "the workflow or recipe the run reads)")
    p.add_argument("--explain", action="store_true", help="say why each node ran (which input changed)")
    _add_preview_options(p)
    p.add_argument("--previews", metavar="DIR",
                   help="save previews of the denoiser's x0 prediction while it samples, as DIR/<node>_<step>.png "
                        "(a taken name gets a counter unless --overwrite)")
    p.add_argument("--json", action="store_true", help="print outputs and the report as JSON")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bars (ours or the libraries') and no per-node report lines: the outputs and "
                        "a one-line summary (with --explain the per-node reasons are still printed)")
    p.add_argument("--traceback", action="store_true", help="when a node fails, show its Python traceback")
    p.set_defaults(command=cmd_run)


def _add_validate(commands: Any, packs: argparse.ArgumentParser) -> None:
    p = _command(commands, "validate", [packs], "Check workflows and report every problem, without running.", """\
examples:
  vdgraph validate workflows/*.json
  vdgraph validate clip.json --set steps=30 --json""")
    p.add_argument("workflows", nargs="+", metavar="WORKFLOW", help="workflow files (paths or fsspec URLs)")
    _add_set(p)
    p.add_argument("--json", action="store_true", help="print the problems as JSON")
    p.set_defaults(command=cmd_validate)


def _add_nodes(commands: Any, packs: argparse.ArgumentParser) -> None:
    p = _command(commands, "nodes", [packs], "List node types with their ports and docs, and pack problems.", """\
examples:
  vdgraph nodes
  vdgraph nodes 'video.*' --json""")
    p.add_argument("pattern", nargs="?", help="only node ids matching this glob (or containing this text)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(command=cmd_nodes)


def _add_schema(commands: Any, packs: argparse.ArgumentParser) -> None:
    p = _command(commands, "schema", [packs], "Print the JSON Schema of workflow files, with every node type.", """\
examples:
  vdgraph schema -o vdgraph.schema.json     # then add "$schema": "vdgraph.schema.json" to a workflow""")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(command=cmd_schema)


def _add_graph(commands: Any) -> None:
    p = _command(commands, "graph", [], "Print a workflow's DAG as Graphviz dot or Mermaid text.", """\
examples:
  vdgraph graph workflows/hello.json | dot -Tsvg > hello.svg
  vdgraph graph workflows/hello.json --format mermaid""")
    p.add_argument("workflow", help="workflow file: a path or any fsspec URL")
    p.add_argument("--format", choices=("dot", "mermaid"), default="dot", help="output format (default: dot)")
    p.set_defaults(command=cmd_graph)


def _add_inspect(commands: Any) -> None:
    p = _command(commands, "inspect", [], "Print the recipe an output file carries (workflow, inputs, seeds, "
                                          "versions).", """\
examples:
  vdgraph inspect out/clip.mp4
  vdgraph inspect out/contact_sheet.png --json
  vdgraph run --from out/clip.mp4 --set seed=8      # the same recipe with another seed""")
    p.add_argument("file", help="a PNG, MP4 or WebM vdgraph wrote, a PNG-frame folder, or a file with a "
                                ".recipe.json sidecar")
    p.add_argument("--json", action="store_true", help="print the recipe as JSON")
    p.set_defaults(command=cmd_inspect)


def _add_models(commands: Any) -> None:
    from vdgraph.models_folder import KINDS, MODELS_ENV

    p = _command(commands, "models", [], "List the models a model input accepts by name: built-ins, the models "
                                         "folder, the local Hugging Face cache.", f"""\
The models folder is ${MODELS_ENV} (a path list) or ~/.local/share/vdgraph/models, with one folder per kind:
{', '.join(k + '/' for k in KINDS)}.

examples:
  vdgraph models
  vdgraph models --kind lora --json""")
    p.add_argument("--kind", choices=KINDS, help="only models of this kind")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(command=cmd_models)


def _add_preview_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preview-every", type=int, default=1, metavar="N",
                   help="a preview every N denoising steps (and after the last; default 1)")
    p.add_argument("--preview-source", choices=("latent", "vae"), default="latent",
                   help="latent: the model's cheap fitted latent-to-RGB map (default); vae: a real VAE decode")


def _preview_settings(args: argparse.Namespace) -> Any:
    from vdgraph.previews import PreviewSettings

    try:
        return PreviewSettings(every=args.preview_every, source=args.preview_source)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _add_serve(commands: Any, packs: argparse.ArgumentParser) -> None:
    p = _command(commands, "serve", [packs], "Serve a job queue over HTTP, with a browser page at /.", """\
examples:
  vdgraph serve                                  # http://127.0.0.1:8188/
  vdgraph serve --output-dir ~/vdgraph-out --workflows my_workflows --cache ~/.cache/vdgraph
  vdgraph serve --host 0.0.0.0 --token "$(openssl rand -hex 16)" --model-root /models --input-root /clips

The queue and history live in DIR/jobs.sqlite3 (DIR: --output-dir); each job writes into DIR/jobs/<id>/.
A job that was running when the server died is marked failed (interrupted) on the next start; queued jobs run.
See docs/server.md for the HTTP API.""")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1); any other address requires --token")
    p.add_argument("--port", type=int, default=8188, help="port to listen on (default 8188; 0: any free port)")
    p.add_argument("--output-dir", default="out", metavar="DIR",
                   help="jobs write into DIR/jobs/<job id>/; the queue database is DIR/jobs.sqlite3 (default ./out)")
    p.add_argument("--workflows", action="append", default=[], metavar="DIR",
                   help="also serve the workflow files (*.json) of DIR (repeatable); the shipped ones are always "
                        "served")
    p.add_argument("--cache", metavar="DIR_OR_URL", help="persistent cache of node outputs (as for `run`)")
    p.add_argument("--token", default=os.environ.get("VDGRAPH_TOKEN") or None,
                   help="require this bearer token on every API call (Authorization: Bearer TOKEN, or ?token=TOKEN "
                        "for the page's media and event stream); default $VDGRAPH_TOKEN, which keeps it out of the "
                        "process list")
    p.add_argument("--model-root", action="append", default=[], metavar="DIR",
                   help="with --token, jobs may load models only from folders inside DIR (repeatable) or by "
                        "built-in name")
    p.add_argument("--input-root", action="append", default=[], metavar="DIR",
                   help="with --token, jobs may read input files (videos, images, LoRAs) only from inside DIR "
                        "(repeatable) or the output folder's jobs/")
    p.add_argument("--max-body", type=int, default=1_000_000, metavar="BYTES",
                   help="largest request body accepted (default 1000000; larger is a 413)")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", help="float32, float16 or bfloat16 (default: float16 on CUDA, else float32)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's own choice)")
    _add_preview_options(p)
    p.set_defaults(command=cmd_serve)


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="assignments",
                   help="set a workflow input, typed by its declaration (repeatable; lists as JSON)")


# -- commands ---------------------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from vdgraph.display import format_outputs, format_report, value_json
    from vdgraph.executor import Executor
    from vdgraph.validate import check

    for option, value in (("--cache", args.cache), ("--events", args.events)):
        if value is not None and not value.strip():  # `--cache "$UNSET"` must not quietly run without a cache
            raise UsageError(f"{option} is empty: name a folder or file (or leave the option out)")
    registry = _registry(args)
    workflow, recorded = _workflow_to_run(args)
    inputs, problems = _overrides(workflow, args.assignments)
    inputs = {**{k: v for k, v in recorded.items() if k in workflow.inputs}, **inputs}
    _set_threads(args)
    executor = Executor(registry, device=args.device, dtype=args.dtype, cache_dir=args.cache)
    if args.sweeps:
        return _run_sweep(args, executor, workflow, inputs, problems)
    found, plan = check(workflow, registry, inputs, require_inputs=True)
    problems += found
    if plan is None or any(p.severity == "error" for p in problems):
        raise WorkflowInvalid(problems)
    if problems and not args.json:
        _print_problems(problems, False, sys.stderr)
    previews = None
    if args.previews is not None:
        if not args.previews.strip():
            raise UsageError("--previews is empty: name a folder (or leave the option out)")
        previews = _preview_settings(args)
    token = CancelToken()
    with _listeners(args) as listeners, _cancel_on_interrupt(token):
        result = executor.run(plan, outputs=args.output, cancel=token, output_dir=args.output_dir,
                              overwrite=args.overwrite, allow_outside_output_dir=args.allow_outside_output_dir,
                              protect=_read_paths(args),
                              explain=args.explain, on_event=_fan_out(listeners), previews=previews)
    if args.json:
        print(json.dumps({"outputs": value_json(result.outputs), "seconds": result.seconds,
                          "report": [r.to_json() for r in result.report]}, indent=2))
    else:
        print("outputs:\n" + format_outputs(result.outputs))
        print("report: " + format_report(result, args.explain, per_node=not args.quiet or args.explain))
    return EXIT_OK


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        most = max(64, 4 * (os.cpu_count() or 1))  # 100,000 threads crashed the process (SIGSEGV) at its first op
        if not 1 <= args.threads <= most:
            raise UsageError(f"--threads must be from 1 to {most} (this machine has {os.cpu_count()} CPUs), got "
                             f"{args.threads}")
        import torch

        torch.set_num_threads(args.threads)  # this process is ours: the CLI may set torch's process-wide pool


def _run_sweep(args: argparse.Namespace, executor: Any, workflow: Any, inputs: dict, problems: list) -> int:
    """`run --sweep`: every job of the grid through one executor, a progress line per job, the grid sheet."""
    import fsspec

    from vdgraph.display import format_outputs, value_json
    from vdgraph.sweep import parse_sweep
    from vdgraph.workflow import parse_override

    def read(path: str) -> str:
        try:
            with fsspec.open(os.path.expanduser(path), "r", encoding="utf-8") as handle:
                return handle.read()
        except (OSError, ValueError) as exc:
            raise UsageError(f"--sweep: cannot read {path!r}: {exc}") from None

    sweeps: dict[str, list] = {}
    for text in args.sweeps:
        try:
            name, raws = parse_sweep(text, read)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if name in sweeps:
            raise UsageError(f"--sweep {name} is given twice; put all its values in one --sweep")
        values = []
        for raw in raws:
            value, problem = parse_override(workflow, name, raw)
            if problem is not None:
                problems.append(dataclasses.replace(problem, message=f"--sweep {problem.message}"))
            values.append(value)
        sweeps[name] = values
    if problems:
        raise WorkflowInvalid(problems)
    explicit = {text.partition("=")[0].strip() for text in args.assignments}
    clash = sorted(explicit & set(sweeps))
    if clash:
        raise UsageError(f"--set {clash[0]} and --sweep {clash[0]}: an input is either set or swept")
    inputs = {k: v for k, v in inputs.items() if k not in sweeps}  # a swept value replaces one a --from recipe held

    def progress(job: Any, total: int) -> None:
        result = job.result
        if not args.json:
            print(f"[{job.index + 1}/{total}] {job.label}: {len(result.ran)} ran, "
                  f"{len(result.report) - len(result.ran)} cached, {job.seconds:.2f} s -> {job.output_dir}",
                  flush=True)

    token = CancelToken()
    with _listeners(args) as listeners, _cancel_on_interrupt(token):
        sweep = executor.sweep(workflow, sweeps, inputs, args.output, output_dir=args.output_dir,
                               overwrite=args.overwrite, allow_outside_output_dir=args.allow_outside_output_dir,
                               protect=_read_paths(args),
                               on_job=progress, cancel=token, explain=args.explain, on_event=_fan_out(listeners))
    if args.json:
        print(json.dumps({"folder": sweep.folder, "sheet": sweep.sheet, "jobs": [
            {"values": value_json(job.values), "output_dir": job.output_dir, "seconds": job.seconds,
             "outputs": value_json(job.result.outputs)} for job in sweep.jobs]}, indent=2))
    else:
        seconds = sum(job.seconds for job in sweep.jobs)
        print(f"sweep: {len(sweep.jobs)} jobs in {seconds:.2f} s, files in {sweep.folder}")
        if sweep.sheet:
            print(f"grid contact sheet: {sweep.sheet}")
        if not args.quiet and sweep.jobs:
            print("outputs of the last job:\n" + format_outputs(sweep.jobs[-1].result.outputs))
    return EXIT_OK


@contextlib.contextmanager
def _library_progress_silenced(quiet: bool) -> Iterator[None]:
    """--quiet: no progress bars from the libraries nodes use (diffusers' and transformers' loading bars, the hub
    client's): every tqdm bar reads TQDM_DISABLE as its default, and the hub client has its own switch. Set for the
    command's duration and restored after, so a Python caller of `main` keeps its environment."""
    if not quiet:
        yield
        return
    names = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _workflow_to_run(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The workflow of `run` and the input values recorded with it: from the file named, or from the recipe an
    output carries (`--from`), read back with the folder it was run from (relative paths resolve as then)."""
    if (args.workflow is None) == (args.from_file is None):
        raise UsageError("give a workflow file or --from FILE (an output that carries its recipe), not both"
                         if args.workflow else "give a workflow file, or --from FILE to re-run an output's recipe")
    if args.from_file is None:
        return _load(args.workflow), {}
    from vdgraph.recipe import RecipeNotFound, read_recipe, replay_document, unreplayable
    from vdgraph.workflow import parse_workflow

    try:
        recipe = read_recipe(args.from_file)
    except (RecipeNotFound, OSError) as exc:
        raise UsageError(f"--from: {exc}") from None
    source = recipe.get("workflow_source")
    if not isinstance(source, str) or not (("://" in source) or os.path.isdir(os.path.dirname(source) or ".")):
        source = None  # the folder it ran from is gone: relative paths resolve against the working directory
    inputs = recipe.get("inputs") if isinstance(recipe.get("inputs"), dict) else {}
    lost = unreplayable(recipe)
    if lost:
        print(f"vdgraph: --from: the recipe could not record the values of {', '.join(lost)} (not JSON values): "
              "they are drawn again, so the output may differ", file=sys.stderr)
    return parse_workflow(replay_document(recipe), source), inputs


def cmd_inspect(args: argparse.Namespace) -> int:
    from vdgraph.recipe import RecipeNotFound, read_recipe

    try:
        recipe = read_recipe(args.file)
    except (RecipeNotFound, OSError) as exc:
        print(f"vdgraph: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(recipe, indent=2, ensure_ascii=False))
        return EXIT_OK
    workflow = recipe["workflow"]
    versions = ", ".join(f"{k} {v}" for k, v in (recipe.get("versions") or {}).items())
    lines = [f"workflow: {workflow.get('name') or '(unnamed)'}"
             + (f"  (from {recipe['workflow_source']})" if recipe.get("workflow_source") else ""),
             f"written by node: {recipe.get('node')}", f"versions: {versions}", "inputs:"]
    lines += [f"  {k} = {json.dumps(v, ensure_ascii=False)}" for k, v in (recipe.get("inputs") or {}).items()]
    lines.append("seeds:")
    lines += [f"  {k} = {json.dumps(v, ensure_ascii=False)}" for k, v in (recipe.get("seeds") or {}).items()]
    lines += ["workflow document:", json.dumps(workflow, indent=2, ensure_ascii=False),
              f"re-run with: vdgraph run --from {args.file}"]
    print("\n".join(lines))
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from vdgraph.models_folder import KINDS, builtin_model_names, hub_cache_models, list_models, model_roots

    local = list_models(args.kind)
    builtins = builtin_model_names() if args.kind in (None, "checkpoints") else []
    hub = hub_cache_models() if args.kind in (None, "checkpoints") else []
    roots = model_roots()
    if args.json:
        print(json.dumps({"roots": roots, "builtin": builtins, "models": [e.to_json() for e in local],
                          "hub_cache": hub}, indent=2))
        return EXIT_OK
    lines = ["built-in:"] + [f"  {name}" for name in builtins] if builtins else []
    lines.append("models folder (" + os.pathsep.join(roots) + "):")
    for kind in KINDS if args.kind is None else (args.kind,):
        entries = [e for e in local if e.kind == kind]
        lines.append(f"  {kind}/" + ("" if entries else "  (none)"))
        lines += [f"    {e.name}{'  (single file)' if e.is_file else ''}  {e.path}" for e in entries]
    if args.kind in (None, "checkpoints"):
        lines.append("Hugging Face cache:" + ("" if hub else "  (none)"))
        lines += [f"  {m['name']}  {m['size_bytes'] / 1e6:.1f} MB" for m in hub]
    print("\n".join(lines))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from vdgraph.server.app import ServerConfig, ServerRefused, serve

    _set_threads(args)
    try:
        config = ServerConfig(host=args.host, port=args.port, output_dir=args.output_dir,
                              workflow_dirs=tuple(args.workflows), cache_dir=args.cache, token=args.token,
                              model_roots=tuple(args.model_root), input_roots=tuple(args.input_root), max_body=args.max_body, device=args.device,
                              dtype=args.dtype, previews=_preview_settings(args))
    except ServerRefused as exc:
        raise UsageError(str(exc)) from None
    return serve(config, _registry(args))


def cmd_validate(args: argparse.Namespace) -> int:
    from vdgraph.validate import validate

    registry = _registry(args)
    results = []
    for source in args.workflows:
        try:
            workflow = _load(source)
        except WorkflowInvalid as exc:
            results.append((source, exc.problems))
            continue
        inputs, problems = _overrides(workflow, args.assignments, ignore_unknown=len(args.workflows) > 1)
        problems += validate(workflow, registry, inputs)
        results.append((source, problems))
    failed = any(p.severity == "error" for _, problems in results for p in problems)
    if args.json:
        print(json.dumps([{"workflow": source, "valid": not any(p.severity == "error" for p in problems),
                           "problems": [p.to_json() for p in problems]} for source, problems in results], indent=2))
    else:
        for source, problems in results:
            errors = sum(p.severity == "error" for p in problems)
            warnings = len(problems) - errors
            status = "invalid" if errors else "ok"
            print(f"{source}: {status} ({errors} error(s), {warnings} warning(s))")
            if problems:
                _print_problems(problems, False, sys.stdout, indent="  ")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_nodes(args: argparse.Namespace) -> int:
    from vdgraph.display import format_load_problems, format_node

    registry = _registry(args)
    pack = _pack_of_pattern(args.pattern)
    if pack is not None:
        registry.load_pack(pack)  # `nodes 'core.*'` need not import every installed pack
    entries = [e for e in registry.entries(load_all=pack is None) if _matches(e.cls.id, args.pattern)]
    problems = registry.problems(load_all=pack is None)
    if args.json:
        print(json.dumps({"nodes": [{**e.cls.describe(), "pack": e.source.name, "source": str(e.source)}
                                    for e in entries],
                          "packs": [status.to_json() for status in registry.packs()],
                          "skipped_folders": [str(folder) for folder in registry.skipped_folders],
                          "problems": [p.to_json() for p in problems]}, indent=2, default=str))
        return EXIT_OK
    print("\n\n".join(format_node(e) for e in entries) if entries else "no node types match")
    print("\n" + _format_packs(registry.packs()))
    if problems:
        print("\npack problems:\n" + format_load_problems(problems), file=sys.stderr)
    return EXIT_OK


def _format_packs(packs: list) -> str:
    """Where each pack's code comes from: 'core  entry point vdgraph_core  (imported, 7 node types)'."""
    lines = ["packs (where node code is loaded from):"]
    width = max((len(status.source.name) for status in packs), default=0)
    for status in packs:
        source = status.source
        where = {"entry-point": "entry point", "folder": "folder pack", "python": "registered from Python"}[
            source.kind] + (f" {source.target}" if source.target else "")
        where += f" (from {source.origin})" if source.kind == "folder" and source.origin else ""
        state = f"imported, {len(status.node_ids)} node type(s)" if status.imported else "not imported"
        lines.append(f"  {source.name.ljust(width)}  {where}  [{state}]")
    return "\n".join(lines) if packs else "packs: none configured"


def cmd_schema(args: argparse.Namespace) -> int:
    from vdgraph.io import atomic_write
    from vdgraph.schema import workflow_schema

    from vdgraph.display import format_load_problems

    registry = _registry(args)
    text = json.dumps(workflow_schema(registry), indent=2) + "\n"
    problems = registry.problems(load_all=True)
    if problems:  # a pack that failed to import is missing from the schema: say so, as `vdgraph nodes` does
        print("pack problems (their node types are not in the schema):\n" + format_load_problems(problems),
              file=sys.stderr)
    if args.output:
        with atomic_write(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from vdgraph.render import to_dot, to_mermaid

    workflow = _load(args.workflow)
    sys.stdout.write(to_dot(workflow) if args.format == "dot" else to_mermaid(workflow))
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------------------------------

def _registry(args: argparse.Namespace) -> Any:
    from vdgraph.errors import PackFolderNotFound
    from vdgraph.registry import Registry

    try:
        registry = Registry.discover(folders=args.nodes, allow_override=args.allow_override, local=args.local_nodes)
    except PackFolderNotFound as exc:
        raise UsageError(str(exc)) from None
    for folder in registry.skipped_folders:
        print(f"vdgraph: note: {folder} was not loaded: node packs in the working directory run only with "
              f"--local-nodes (or {LOCAL_NODES_ENV}=1)", file=sys.stderr)
    return registry


def _load(source: str) -> Any:
    from vdgraph.workflow import WorkflowNotFound, load_workflow

    try:
        return load_workflow(source)
    except WorkflowNotFound as exc:
        raise WorkflowInvalid([Problem("file.unreadable", str(exc), "check the path or URL", file=source)]) from None


def _overrides(workflow: Any, assignments: list[str], ignore_unknown: bool = False) -> tuple[dict, list[Problem]]:
    """Typed values of `--set name=value` options, and the problems of those that do not parse."""
    from vdgraph.workflow import parse_assignment, parse_override

    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for text in assignments:
        try:
            name, raw = parse_assignment(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if ignore_unknown and name not in workflow.inputs:
            continue  # validating several files: an input may belong to only some of them
        value, problem = parse_override(workflow, name, raw)
        if problem is None:
            values[name] = value
        else:
            problems.append(problem)
    return values, problems


def _pack_of_pattern(pattern: str | None) -> str | None:
    """The one pack a node-id pattern can match ('core.*' -> 'core'), or None when it may match any pack."""
    if not pattern or "." not in pattern:
        return None
    head = pattern.split(".", 1)[0]
    return None if any(c in head for c in "*?[") else head


def _matches(node_id: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    return fnmatch.fnmatchcase(node_id, pattern) if any(c in pattern for c in "*?[") else pattern in node_id


def _print_problems(problems: list[Problem], as_json: bool, stream: Any = None, indent: str = "") -> None:
    from vdgraph.display import format_problems

    if as_json:
        print(json.dumps({"valid": False, "problems": [p.to_json() for p in problems]}, indent=2))
        return
    stream = stream or sys.stderr
    text = format_problems(problems)
    print("\n".join(indent + line for line in text.splitlines()), file=stream)


def _fan_out(listeners: list) -> Any:
    def emit(event: Any) -> None:
        for listener in listeners:
            listener(event)

    return emit


@contextlib.contextmanager
def _listeners(args: argparse.Namespace) -> Iterator[list]:
    from vdgraph.progress import ProgressBars

    listeners: list = [_print_cache_warning] if getattr(args, "cache", None) else []
    bars = None
    if not args.quiet and not args.json and sys.stderr.isatty():
        bars = ProgressBars(sys.stderr)
        listeners.append(bars)
    if getattr(args, "previews", None):
        from vdgraph.previews import PreviewWriter

        listeners.append(PreviewWriter(args.previews, overwrite=args.overwrite))
    with contextlib.ExitStack() as stack:
        if args.events:
            listeners.append(_event_log(args.events, args.overwrite, stack, _read_paths(args)))
        try:
            yield listeners
        finally:
            if bars is not None:
                bars.close()


def _read_paths(args: argparse.Namespace) -> list[str]:
    """Local files this run reads and no write of it may replace, even with --overwrite: the workflow file, and
    for --from the output the recipe comes from (for a .recipe.json sidecar, the file it describes too)."""
    from vdgraph.recipe import SIDECAR_SUFFIX

    paths = [p for p in (getattr(args, "workflow", None), getattr(args, "from_file", None)) if p and "://" not in p]
    if args.from_file and args.from_file.endswith(SIDECAR_SUFFIX) and "://" not in args.from_file:
        paths.append(args.from_file[: -len(SIDECAR_SUFFIX)])
    return paths


def _event_log(target: str, overwrite: bool, stack: contextlib.ExitStack, protected: list[str] = ()) -> Any:
    """A listener writing the events to `target`: an existing file is replaced only with --overwrite (a pipe or
    a terminal is written to as usual), never a folder, a link or a file the run reads (`protected`), and a failed
    write names the file. A file it made that got no event (the run stopped before its first) is removed again, so
    a retry needs no --overwrite."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    from vdgraph.io import naming_the_path
    from vdgraph.progress import EventLog

    try:
        fs, path = fsspec.core.url_to_fs(target)
        local = isinstance(fs, LocalFileSystem)
        if local and os.path.isdir(path):
            raise UsageError(f"--events {target!r} is a folder; name a file")
        if local and os.path.islink(path):
            raise UsageError(f"--events {target!r} is a symbolic link; vdgraph does not write through links: name "
                             "the file itself, or a new one")
        if local and os.path.exists(path) and any(os.path.exists(p) and os.path.samefile(path, p) for p in protected):
            raise UsageError(f"--events {target!r} is a file this run reads (its workflow or recipe); name another "
                             "file")
        taken = os.path.isfile(path) if local else fs.exists(path)
        if taken and not overwrite:
            raise UsageError(f"--events {target!r} exists; pass --overwrite to replace it, or name a new file")
        written = [False]

        def remove_if_empty() -> None:  # registered first, so it runs after the handle below is closed
            if not written[0] and not taken and local:
                with contextlib.suppress(OSError):
                    os.remove(path)

        stack.callback(remove_if_empty)
        with naming_the_path(target):
            handle = stack.enter_context(_closed_naming(fsspec.open(target, "w", encoding="utf-8").open(), target))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot write events to {target!r}: {exc}") from None
    log = EventLog(handle)

    def write(event: Any) -> None:
        written[0] = True
        with naming_the_path(target):  # a full disk says which file it could not write
            log(event)

    return write


@contextlib.contextmanager
def _closed_naming(handle: Any, target: str) -> Iterator[Any]:
    """Close `handle` at the end; a failure to close (the last flush) names `target`, unless an error is already
    on its way out (then that one is the one to report)."""
    from vdgraph.io import naming_the_path

    try:
        yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    with naming_the_path(target):
        handle.close()


def _print_cache_warning(event: Any) -> None:
    from vdgraph.events import CacheWarning

    if isinstance(event, CacheWarning):
        print(f"vdgraph: warning: {event.message}", file=sys.stderr)


@contextlib.contextmanager
def _cancel_on_interrupt(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C: cancel at the next step or between nodes. Second: stop immediately."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        print("\nvdgraph: cancelling at the next step (Ctrl-C again to stop now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
