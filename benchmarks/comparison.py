"""What the two projector comparisons (codebook_usage.py, codebook_scaling.py) share: the projectors, the bridge
for each codebook size, the initialisation recipe, how a run's usage curve is drawn and how the table is printed.
"""

from __future__ import annotations

from collections.abc import Callable

PROJECTORS = ["none", "linear", "mlp", "vqbridge"]
# the paper's bridge for each size: about 1,024 bridge tokens as K grows
BRIDGE_FOR_SIZE = {4096: "L/4", 16384: "L/4", 65536: "L/8", 262144: "L/8"}
COLOURS = {"none": "tab:gray", "linear": "tab:blue", "mlp": "tab:orange", "vqbridge": "tab:green"}


def raw_codebook_init_std(projector: str, requested: float, baseline_init: str = "paper") -> float | None:
    """The raw codebook's init std for a run (None: VQGAN's uniform ±1/K).

    VQBridge gets ``requested`` (the project's recipe; 0 gives the paper's ±1/K). A baseline (``none``, ``linear``,
    ``mlp``) is run with ``baseline_init="paper"``, the ±1/K the paper's baselines use, or ``"fair"``, the same
    N(0, ``requested``²) as the bridge, so the comparison cannot have been set up to win.
    """
    if not requested or (projector != "vqbridge" and baseline_init == "paper"):
        return None
    return requested


def add_init_arguments(parser) -> None:
    """The initialisation flags both comparisons take (the project's recipe by default, 0 for the paper's)."""
    parser.add_argument(
        "--codebook_init_std",
        type=float,
        default=0.02,
        help="raw codebook init behind a projector (the plain codebook keeps ±1/K); 0: the paper's ±1/K for all",
    )
    parser.add_argument(
        "--bridge_output_init_std", type=float, default=1e-3, help="VQBridge last-layer init std (0: the paper's zeros)"
    )


BASELINE_INITS = ("paper", "fair")


def run_plan(projectors: list[str], baseline_inits: list[str]) -> list[tuple[str, str]]:
    """(projector, baseline init) of every run: each baseline once per init asked for, VQBridge once."""
    return [
        (projector, init)
        for projector in projectors
        for init in (["recipe"] if projector == "vqbridge" else baseline_inits)
    ]


def add_baseline_init_argument(parser, default: tuple[str, ...] = BASELINE_INITS) -> None:
    parser.add_argument(
        "--baseline_inits",
        nargs="+",
        default=list(default),
        choices=BASELINE_INITS,
        help="raw-codebook init of the baselines: paper (uniform ±1/K) and/or fair (the bridge's N(0, std²))",
    )


def describe_init(std: float | None) -> str:
    return "uniform(-1/K, 1/K)" if std is None else f"N(0, {std:g}^2)"


def run_label(run: dict) -> str:
    """The projector of a run, with what sets it apart: the bridge's init on a baseline, no slot restart."""
    label = run["projector"]
    if run.get("baseline_init") == "fair":
        label += f", {run['codebook_init']}"
    if run.get("code_search") == "cosine":
        label += ", cosine search"
    if run.get("slot_restart") is False:
        label += ", no slot restart"
    if run.get("single_code_reference"):
        label += f", single-code {run['tokenizer_preset']}"
    return label


def plot_curve(ax, run: dict) -> None:
    """One run's usage against step: colour by projector, dashed without annealing."""
    label = run_label(run) + ("" if run["annealing"] else " (no annealing)")
    ax.plot(
        [c["step"] for c in run["curve"]],
        [100 * c["usage"] for c in run["curve"]],
        label=label,
        marker="o",
        markersize=3,
        color=COLOURS[run["projector"]],
        linestyle="-" if run["annealing"] else "--",
        alpha=0.55 if run.get("baseline_init") == "fair" or run.get("slot_restart") is False else 1.0,
        linewidth=3 if run.get("single_code_reference") else 1.5,
    )


def slots_text(run: dict) -> str:
    return f"{run['live_slots']}/{run['slots']}" if run["live_slots"] is not None else "–"


def print_table(runs: list[dict], columns: list[tuple[str, Callable[[dict], str]]]) -> None:
    """A Markdown table, one row per run, one column per (header, cell formatter)."""
    print("\n| " + " | ".join(header for header, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for run in runs:
        print("| " + " | ".join(cell(run) for _, cell in columns) + " |")
