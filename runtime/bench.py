"""`ruledsl bench`: optimization methods compared at equal compute on held-out task instances.

Success is judged by the independent task scorers (`ruledsl.tasks.scorers`, plain numpy), not by the
rules being optimized; "every rule holds" and the rules-vs-scorer agreement on the generated videos
are reported beside it. Compute is counted in denoiser forward-equivalents (NFE, runtime/loop.py).

One job is one instance: a worker generates the instance (`tasks generate` numbering: family, index,
seed, split), compiles `examples/<family>.rule` with the task's params and runs every method on it.
A method whose schedule does not depend on the total budget (its steps stop on success or plateau and
never look at the budget) runs once, at the largest budget: every new best video it finds is scored,
so that one run gives its result at every budget (the best video found within that NFE) and the NFE
of its first success. Other methods run once per budget.

Outputs in `--out`: `results.jsonl` (one line per instance x method x budget, appended as each
instance finishes, so a killed bench loses no finished instance and `--resume` skips them), and,
rebuilt from it at the end, `summary.json`, `table.md`, `success_vs_nfe.png`, `per_family.png`,
`index.html` (per instance: the methods' videos side by side with rule verdicts and scorer results).
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

RESULTS = "results.jsonl"
OUTPUTS = (RESULTS, "summary.json", "table.md", "success_vs_nfe.png", "per_family.png", "index.html", "videos")


class BenchError(ValueError):
    """A bench that cannot run as asked (unknown method or family, an out folder in the way, ...)."""


@dataclass(frozen=True)
class BenchMethod:
    """One entry of the method table: what `--methods` accepts."""

    name: str
    doc: str
    loop_method: str | None  # the runtime.loop method; None: only the base sample
    budget_free: bool = True  # its schedule ignores the total budget: one run gives every budget
    settings: dict = field(default_factory=dict)  # Settings overrides


METHODS: dict[str, BenchMethod] = {
    m.name: m
    for m in (
        BenchMethod("base", "the base sample (seed 0): no search, no gradient", None),
        BenchMethod(
            "best-of-n",
            "N seeds without gradient; the compiled program picks the best",
            "best-of-n",
            settings={"frame_retries": 0, "frame_backtracks": 0, "frame_goal_draws": 1},  # plain, whatever the default
        ),
        BenchMethod(
            "guided-bon",
            "Best-of-N with frame guidance (runtime/frame_guide.py), no gradient: what tto's search alone does",
            "best-of-n",
        ),
        BenchMethod("noise", "initial-noise optimization through every sampling step (ReNO-style)", "noise"),
        BenchMethod("lora-v1", "LoRA on one fixed seed, gradients through the last sampling steps", "lora"),
        BenchMethod(
            "tto",
            "population search on the base model plus a LoRA fitted to the best candidate (runtime/tto.py)",
            "tto",
        ),
    )
}


def method_table(extra: dict | None = None) -> dict[str, BenchMethod]:
    """METHODS plus a config's `extra_methods` (name -> BenchMethod fields but the name: a sweep's variants)."""
    return {**METHODS, **{name: BenchMethod(name, **spec) for name, spec in (extra or {}).items()}}


def parse_methods(text: str, extra: dict | None = None) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    table = method_table(extra)
    unknown = [n for n in names if n not in table]
    if unknown or not names:
        raise BenchError(f"unknown method {', '.join(unknown) or '(none given)'}; choose from {', '.join(table)}")
    return names


@dataclass(frozen=True)
class BenchConfig:
    out: str
    split: str = "test"
    n: int = 10
    seed: int = 0
    families: tuple[str, ...] = ()  # empty: every family
    methods: tuple[str, ...] = ("base", "best-of-n", "lora-v1")
    budgets: tuple[float, ...] = (400.0,)
    model: str | None = None  # a model folder (load_generator); None: the built-in reasoner
    steps: int | None = None  # sampling steps per rollout (per frame if autoregressive); None: the model's
    device: str | None = None  # None: cuda when available, else cpu
    dtype: str | None = None  # the frozen model's dtype; None: float32
    # Instances are rendered and judged at size x size, and a v2 reasoner (LatentReasonerModel) samples
    # at it too (ReasonerGenerator(size=...)); other models keep their own resolution.
    size: int = 64
    workers: int = 1
    engine: str = "local"  # "local" | "ray"
    address: str | None = None  # a Ray cluster address; None: start a local Ray instance
    # Methods beyond METHODS, name -> {"doc", "loop_method", "settings"}: plain data, so they reach
    # spawned and Ray workers with the config (benchmarks/tto_sweep.py's variants).
    extra_methods: dict = field(default_factory=dict)

    def instances(self) -> list[tuple[str, int]]:
        return [(family, index) for family in self.families for index in range(self.n)]

    def keys(self, family: str, index: int) -> set[tuple]:
        return {(family, index, m, b) for m in self.methods for b in self.budgets}


def validate(config: BenchConfig) -> BenchConfig:
    from ruledsl.tasks.families import FAMILIES, SPLITS

    families = config.families or tuple(FAMILIES)
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        raise BenchError(f"unknown family {', '.join(bad)}; choose from {', '.join(FAMILIES)}")
    if config.split not in SPLITS:
        raise BenchError(f"unknown split {config.split!r}; choose from {', '.join(SPLITS)}")
    parse_methods(",".join(config.methods), config.extra_methods)
    if not config.budgets or any(not (b > 0 and math.isfinite(b)) for b in config.budgets):
        raise BenchError(f"budgets must be positive NFE counts, got {list(config.budgets)}")
    if config.n < 1 or config.workers < 1:
        raise BenchError("--n and --workers must be at least 1")
    if config.size < 16:
        raise BenchError(f"--size must be at least 16 pixels, got {config.size}")
    if config.engine not in ("local", "ray"):
        raise BenchError(f"unknown engine {config.engine!r}; choose from local, ray")
    _check_model(config)
    return BenchConfig(**{**asdict(config), "families": families, "budgets": tuple(sorted(set(config.budgets)))})


# ---- one instance (runs in a worker) -----------------------------------------------------------

_GENERATORS: dict = {}  # per worker process: the model is loaded once


def _check_model(config: BenchConfig) -> None:
    """A model folder, device and dtype that cannot be used fail here, before any worker starts."""
    from ruledsl.runtime import load

    try:
        if config.model is not None:
            load.adapter_for(Path(config.model))
        load.resolve_device(config.device)
        load.resolve_dtype(config.dtype)
        if _samples_at_size(config):  # a small model: loading it is how a size off its unit is found
            _generator(config)
    except load.GeneratorLoadError as error:
        raise BenchError(str(error)) from None


def _samples_at_size(config: BenchConfig) -> bool:
    """Whether the bench's model samples at `config.size` (a v2 reasoner) or at its own resolution."""
    from ruledsl.runtime.load import model_class_name, model_folder

    return model_class_name(model_folder(config.model)) == "LatentReasonerModel"


def _generator(config: BenchConfig):
    from ruledsl.runtime.load import load_generator

    key = (config.model, config.steps, config.device, config.dtype, config.size)
    if key not in _GENERATORS:
        size = config.size if _samples_at_size(config) else None
        _GENERATORS[key] = load_generator(config.model, config.device, config.dtype, steps=config.steps, size=size)
    return _GENERATORS[key]


def example_program(family: str, metadata: dict, size: int, **options):
    """The family's shipped example program, compiled with the task's params for size x size frames
    (`options`: compile options). What every benchmark judges a generated task with."""
    import ruledsl
    from ruledsl.tasks.layout import params_for

    loaded = ruledsl.load(Path(str(resources.files("ruledsl.examples"))) / f"{family}.rule")
    return loaded.compile(params=params_for(loaded, metadata, (size, size)), **options)


def run_instance(config: BenchConfig, family: str, index: int, methods: Iterable[str] | None = None) -> list[dict]:
    """Every (method, budget) row of one instance; writes the largest budget's videos under out/videos."""
    import torch

    from ruledsl.compiler.video_io import write_video
    from ruledsl.runtime.generators import condition_from_instance, to_uint8
    from ruledsl.runtime.loop import Budget, Settings, optimize
    from ruledsl.tasks.families import generate
    from ruledsl.tasks.scorers import score_video

    torch.set_num_threads(1)  # one worker per instance; more threads per worker only contend
    instance = generate(family, index, config.seed, config.split)
    meta = instance.to_dict()
    program = example_program(family, meta, config.size)
    condition = condition_from_instance(instance, config.size)
    generator = _generator(config)
    videos = Path(config.out) / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    scored: dict[int, tuple[bool, float, list[str]]] = {}

    def score(video) -> tuple[bool, float, list[str]]:
        key = id(video)
        if key not in scored:
            verdict = score_video(to_uint8(video), meta)
            scored[key] = (bool(verdict.passed), float(verdict.score), list(verdict.reasons))
        return scored[key]

    rows = []
    table = method_table(config.extra_methods)
    for name in methods or config.methods:
        method = table[name]
        runs = [max(config.budgets)] if method.budget_free else list(config.budgets)
        for run_budget in runs:
            bests: list[tuple[float, Any, Any]] = []  # (nfe when found, video, report)
            settings = Settings(method=method.loop_method or "best-of-n", **method.settings)
            budget = Budget(steps=0 if method.loop_method is None else 10**9, nfe=run_budget)
            result = optimize(
                program,
                condition,
                generator,
                budget,
                settings,
                on_best=lambda video, report, step, nfe, bests=bests: bests.append((nfe, video, report)),
            )
            covered = config.budgets if method.budget_free else (run_budget,)
            for b in covered:
                within = [e for e in bests if e[0] <= b] or bests[:1]
                nfe, video, report = within[-1]
                passed, value, reasons = score(video)
                first = next((e[0] for e in bests if e[0] <= b and score(e[1])[0]), None)
                row = {
                    "instance": f"{family}/{index:05d}",
                    "family": family,
                    "index": index,
                    "split": config.split,
                    "seed": config.seed,
                    "size": config.size,
                    "method": name,
                    "budget": b,
                    "nfe": min(result.nfe, b) if method.budget_free else result.nfe,
                    "nfe_to_success": first,
                    "passed": passed,
                    "score": round(value, 4),
                    "reasons": reasons,
                    "rules_hold": bool(report.satisfied[0]),
                    "rules": {n: bool(r.verdict[0]) for n, r in report.rules.items()},
                    "base_passed": score(bests[0][1])[0],
                    "steps": len(result.history) - 1,
                    "seconds": round(result.seconds, 3),
                    "stop_reason": result.stop_reason,
                    "video": None,
                }
                if b == max(config.budgets):
                    path = videos / f"{family}_{index:05d}_{name}.gif"
                    write_video(path, video)
                    row["video"] = str(path.relative_to(config.out))
                if method.budget_free:  # the whole best-so-far curve, for success_vs_nfe.png
                    row["curve"] = [[e[0], score(e[1])[0]] for e in bests if e[0] <= b]
                rows.append(row)
    return rows


def _worker(args: tuple) -> list[dict]:
    config, family, index, methods = args
    return run_instance(config, family, index, methods)


# ---- the bench: instances over workers, resumable ---------------------------------------------


def read_results(path: Path) -> list[dict]:
    """Rows of results.jsonl; a line cut short by a kill is skipped (its instance runs again)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def prepare_out(out: Path, resume: bool, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not resume:
        ours = [name for name in OUTPUTS if (out / name).exists()]
        others = [p.name for p in out.iterdir() if p.name not in OUTPUTS]
        if not force or others:
            hint = "pass --resume to continue it or --force to start over" if not others else "choose another --out"
            raise BenchError(f"{out} is not empty ({', '.join(sorted(others or ours)[:5])}); {hint}")
        import shutil

        for name in ours:
            target = out / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def run_bench(config: BenchConfig, resume: bool = False, force: bool = False, progress: Callable | None = None):
    """Run the missing (instance, method, budget) rows, then rebuild every output. Returns the summary."""
    config = validate(config)
    out = Path(config.out)
    prepare_out(out, resume, force)
    results = out / RESULTS
    previous = read_results(results)
    stream = (config.split, config.seed, config.size)
    other = next((r for r in previous if (r["split"], r["seed"], r.get("size", 64)) != stream), None)
    if other is not None:  # --resume continues the same bench; rows of another one would be mixed in
        raise BenchError(
            f"{out} holds a bench of split {other['split']!r}, seed {other['seed']}, size {other.get('size', 64)};"
            f" this one is split {config.split!r}, seed {config.seed}, size {config.size}: choose another --out"
        )
    if results.exists():  # drop a line a kill cut short, so the next append starts on a fresh line
        _write(results, "".join(json.dumps(r) + "\n" for r in previous))
    done = {(r["family"], r["index"], r["method"], r["budget"]) for r in previous}
    jobs = []
    for family, index in config.instances():
        missing = config.keys(family, index) - done
        if missing:
            methods = tuple(m for m in config.methods if any(k[2] == m for k in missing))
            jobs.append((config, family, index, methods))
    if progress:
        progress(0, len(jobs), len(config.instances()) - len(jobs))
    with results.open("a", encoding="utf-8") as sink:
        for finished, rows in enumerate(_execute(config, jobs), 1):
            for row in rows:
                if (row["family"], row["index"], row["method"], row["budget"]) not in done:
                    sink.write(json.dumps(row) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            if progress:
                progress(finished, len(jobs), len(config.instances()) - len(jobs))
    wanted = {k for family, index in config.instances() for k in config.keys(family, index)}
    rows = [r for r in read_results(results) if (r["family"], r["index"], r["method"], r["budget"]) in wanted]
    summary = summarize(rows, config)
    write_outputs(out, rows, summary, config)
    return summary


def _execute(config: BenchConfig, jobs: list[tuple]):
    """Yield each job's rows as it finishes: in this process, a local process pool, or Ray."""
    if not jobs:
        return
    if config.engine == "ray":
        import ray

        ray.init(address=config.address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=1)(_worker)
        pending = [remote.remote(job) for job in jobs]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
        return
    if config.workers == 1 or len(jobs) == 1:
        for job in jobs:
            yield _worker(job)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn, not fork: torch and its thread pools must not be forked mid-state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(config.workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(_worker, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


# ---- statistics ---------------------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: under H0 the discordant pairs split 50/50."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _key(budget: float) -> str:
    """A budget as a summary key and column title: 400, not 400.0."""
    return f"{budget:g}"


def _cell(rows: list[dict]) -> dict:
    n, passed = len(rows), sum(r["passed"] for r in rows)
    nfes = [r["nfe_to_success"] for r in rows if r["nfe_to_success"] is not None]
    low, high = wilson(passed, n)
    return {
        "n": n,
        "passed": passed,
        "rate": passed / n if n else 0.0,
        "ci95": [round(low, 4), round(high, 4)],
        "rules_hold": sum(r["rules_hold"] for r in rows),
        "mean_score": round(statistics.fmean(r["score"] for r in rows), 4) if rows else None,
        "median_nfe_to_success": statistics.median(nfes) if nfes else None,
        "seconds_per_instance": round(statistics.fmean(r["seconds"] for r in rows), 3) if rows else None,
    }


def summarize(rows: list[dict], config: BenchConfig) -> dict:
    by: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        by.setdefault((r["method"], r["budget"]), []).append(r)
    methods = {m: {_key(b): _cell(by.get((m, b), [])) for b in config.budgets} for m in config.methods}
    per_family = {
        f: {
            m: {_key(b): _cell([r for r in by.get((m, b), []) if r["family"] == f]) for b in config.budgets}
            for m in config.methods
        }
        for f in config.families
    }
    paired = []
    for b in config.budgets:
        for a, c in combinations(config.methods, 2):
            left = {r["instance"]: r["passed"] for r in by.get((a, b), [])}
            right = {r["instance"]: r["passed"] for r in by.get((c, b), [])}
            common = sorted(set(left) & set(right))
            a_only = sum(left[i] and not right[i] for i in common)
            c_only = sum(right[i] and not left[i] for i in common)
            both = sum(left[i] and right[i] for i in common)
            paired.append(
                {
                    "budget": b,
                    "a": a,
                    "b": c,
                    "a_only": a_only,
                    "b_only": c_only,
                    "both": both,
                    "neither": len(common) - a_only - c_only - both,
                    "p_mcnemar": round(mcnemar_exact(a_only, c_only), 4),
                }
            )
    agree = sum(r["passed"] == r["rules_hold"] for r in rows)
    return {
        "config": {**asdict(config), "families": list(config.families), "budgets": list(config.budgets)},
        "methods": methods,
        "per_family": per_family,
        "paired": paired,
        "agreement": {
            "videos": len(rows),
            "agree": agree,
            "rate": round(agree / len(rows), 4) if rows else None,
            "rules_only": sum(r["rules_hold"] and not r["passed"] for r in rows),
            "scorer_only": sum(r["passed"] and not r["rules_hold"] for r in rows),
        },
    }


# ---- outputs ------------------------------------------------------------------------------------


def _pct(cell: dict) -> str:
    low, high = cell["ci95"]
    return f"{100 * cell['rate']:.0f} % [{100 * low:.0f}, {100 * high:.0f}] ({cell['passed']}/{cell['n']})"


def table_markdown(summary: dict) -> str:
    config = summary["config"]
    budgets = [_key(b) for b in config["budgets"]]
    lines = [
        f"# bench: split `{config['split']}`, {config['n']} instances per family, seed {config['seed']}",
        "",
        "Scorer pass rate with 95 % Wilson interval (passed/n) at each NFE budget; `rules` = every compiled",
        "rule holds; `NFE→success` = median NFE of the first scorer success among solved instances.",
        "",
        "| method | " + " | ".join(f"NFE {b}" for b in budgets) + f" | rules (NFE {budgets[-1]}) | NFE→success |",
        "|---" * (len(budgets) + 3) + "|",
    ]
    for method, cells in summary["methods"].items():
        last = cells[budgets[-1]]
        median = last["median_nfe_to_success"]
        lines.append(
            f"| {method} | "
            + " | ".join(_pct(cells[b]) for b in budgets)
            + f" | {last['rules_hold']}/{last['n']} | {'-' if median is None else f'{median:g}'} |"
        )
    lines += ["", f"## Per family (NFE {budgets[-1]})", ""]
    methods = list(summary["methods"])
    lines += ["| family | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for family, cells in summary["per_family"].items():
        lines.append(f"| {family} | " + " | ".join(_pct(cells[m][budgets[-1]]) for m in methods) + " |")
    lines += ["", f"## Paired at NFE {budgets[-1]} (instances solved by one method and not the other)", ""]
    lines += ["| NFE | a | b | a only | b only | both | neither | exact McNemar p |", "|---" * 8 + "|"]
    for p in (p for p in summary["paired"] if _key(p["budget"]) == budgets[-1]):  # every budget: summary.json
        lines.append(
            f"| {p['budget']:g} | {p['a']} | {p['b']} | {p['a_only']} | {p['b_only']} | {p['both']} "
            f"| {p['neither']} | {p['p_mcnemar']:.3g} |"
        )
    a = summary["agreement"]
    if a["videos"]:
        lines += [
            "",
            f"Rules vs scorer on the chosen videos: agree on {a['agree']}/{a['videos']} ({100 * a['rate']:.0f} %); "
            f"rules hold but the scorer fails: {a['rules_only']}; the scorer passes but a rule fails: {a['scorer_only']}.",
        ]
    return "\n".join(lines) + "\n"


def _curve_rate(rows: list[dict], nfe: float) -> float:
    """Pass rate at `nfe` of a budget-free method's best-so-far curves (one row per instance)."""
    hits = 0
    for r in rows:
        events = [passed for at, passed in r["curve"] if at <= nfe]
        hits += bool(events and events[-1])
    return hits / len(rows)


def plot_success_vs_nfe(path: Path, rows: list[dict], summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = summary["config"]["budgets"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, cells in summary["methods"].items():
        top = [r for r in rows if r["method"] == method and r["budget"] == max(budgets)]
        if top and all("curve" in r for r in top):  # one run at the largest budget: the whole curve
            grid = sorted({at for r in top for at, _ in r["curve"]} | {max(budgets)})
            (line,) = ax.step(grid, [_curve_rate(top, x) for x in grid], where="post", label=method)
            color = line.get_color()
        else:
            color = None
        xs = [b for b in budgets if cells[_key(b)]["n"]]
        ys = [cells[_key(b)]["rate"] for b in xs]
        err = [
            [y - cells[_key(b)]["ci95"][0] for b, y in zip(xs, ys)],
            [cells[_key(b)]["ci95"][1] - y for b, y in zip(xs, ys)],
        ]
        ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3, color=color, label=None if color else method)
    ax.set_xlabel("NFE (denoiser forward-equivalents)")
    ax.set_ylabel("scorer pass rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{summary['config']['split']}: {len({r['instance'] for r in rows})} instances (95 % Wilson)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_family(path: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = _key(summary["config"]["budgets"][-1])
    families, methods = list(summary["per_family"]), list(summary["methods"])
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(families) * max(1, len(methods)) / 2), 4))
    for i, method in enumerate(methods):
        cells = [summary["per_family"][f][method][budget] for f in families]
        xs = [k + (i - (len(methods) - 1) / 2) * width for k in range(len(families))]
        ys = [c["rate"] for c in cells]
        err = [[y - c["ci95"][0] for c, y in zip(cells, ys)], [c["ci95"][1] - y for c, y in zip(cells, ys)]]
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=method)
    ax.set_xticks(range(len(families)), families)
    ax.set_ylabel(f"scorer pass rate at NFE {budget}")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def index_html(rows: list[dict], summary: dict) -> str:
    budget = summary["config"]["budgets"][-1]
    methods = list(summary["methods"])
    top = {(r["instance"], r["method"]): r for r in rows if r["budget"] == budget}
    instances = sorted({r["instance"] for r in rows})
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in methods)
    body = []
    for instance in instances:
        cells = []
        for m in methods:
            r = top.get((instance, m))
            if r is None:
                cells.append("<td>-</td>")
                continue
            rules = " ".join(
                f"<span class={'ok' if v else 'bad'}>{'✓' if v else '✗'} {e(n)}</span>" for n, v in r["rules"].items()
            )
            verdict = "PASS" if r["passed"] else "FAIL"
            reasons = e("; ".join(r["reasons"])[:300])
            video = f"<img src='{e(r['video'])}' width=128>" if r.get("video") else ""
            cells.append(
                f"<td>{video}<div class={'ok' if r['passed'] else 'bad'}>scorer {verdict} ({r['score']:.2f})</div>"
                f"<div class=small>{reasons}</div><div class=small>{rules}</div>"
                f"<div class=small>NFE {r['nfe']:g}, {e(r['stop_reason'])}</div></td>"
            )
        body.append(f"<tr><th>{e(instance)}</th>{''.join(cells)}</tr>")
    return (
        "<!doctype html><meta charset=utf-8><title>ruledsl bench</title><style>"
        "body{font-family:sans-serif} td,th{vertical-align:top;padding:4px;border-bottom:1px solid #ddd}"
        "img{image-rendering:pixelated} .ok{color:#080} .bad{color:#b00} .small{font-size:11px;max-width:220px}"
        f"</style><h1>bench: {e(summary['config']['split'])}, NFE {budget:g}</h1>"
        "<p>Each method's chosen video at the largest budget, its scorer verdict and the compiled rules' verdicts."
        " Summary: <a href=table.md>table.md</a>, <a href=summary.json>summary.json</a>.</p>"
        f"<img src=success_vs_nfe.png> <img src=per_family.png><table><tr><th>instance</th>{head}</tr>"
        + "".join(body)
        + "</table>"
    )


def _write(path: Path, text: str) -> None:
    """Write-then-rename: a reader (or a kill) never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def write_outputs(out: Path, rows: list[dict], summary: dict, config: BenchConfig) -> None:
    _write(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    _write(out / "table.md", table_markdown(summary))
    _write(out / "index.html", index_html(rows, summary))
    if rows:
        plot_success_vs_nfe(out / "success_vs_nfe.png", rows, summary)
        plot_per_family(out / "per_family.png", summary)
