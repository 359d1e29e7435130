"""The paper's Figures 2 and 3 redrawn: minivae's curves beside the paper's points.

The points were read off the published figures (minivae/paper/README.md):
`figure2.csv` holds the lower bound of AEVB and wake-sleep on MNIST and
Frey Face, `figure3.csv` the marginal likelihood of AEVB, wake-sleep and
Monte Carlo EM with 1,000 and 50,000 training points.  `paper_points`
reads them (csv module, no pandas) into one row format; `curves` draws a
grid of panels, each with minivae's train and test curves as lines and
the paper's as markers in the same colour, on a log axis of the training
samples evaluated.
"""
import csv
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from minivae.plots import DPI

PAPER = Path(__file__).parent / "paper"
# the CSVs' algorithm names -> minivae's --algorithm values, and how each is drawn
ALGORITHMS = {"AEVB": "aevb", "wake-sleep": "wake-sleep", "MCEM": "mcem"}
NAMES = {value: name for name, value in ALGORITHMS.items()}
COLOURS = {"aevb": "C3", "wake-sleep": "C2", "mcem": "C0"}
LINES = {"train": "-", "test": "--"}                   # minivae: a line per split
MARKERS = {"train": ("o", "full"), "test": ("^", "none")}   # the paper: a marker per split
PANEL_SIZE = (380, 420)                                # pixels of one panel


def panel_name(dataset=None, latent=None, n_train=None):
    """The name of one panel, shared by the paper's rows and minivae's runs:
    'MNIST, latent 3' (Figure 2) or 'N = 1,000' (Figure 3)."""
    return f"N = {n_train:,}" if n_train is not None else f"{dataset}, latent {latent}"


def paper_points(figure):
    """The points of `figure` ('figure2' or 'figure3') read off the paper, as
    rows {'panel', 'algorithm', 'split', 'samples', 'nats'}: the panel by
    `panel_name`, the algorithm as minivae names it (aevb, wake-sleep, mcem),
    the split (train or test), the training samples evaluated, and the lower
    bound (Figure 2) or marginal likelihood (Figure 3) per datapoint in nats."""
    with open(PAPER / f"{figure}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    value = "lower_bound_nats" if figure == "figure2" else "marginal_likelihood_nats"
    return [{"panel": panel_name(row["dataset"], int(row["latent"])) if figure == "figure2"
             else panel_name(n_train=int(row["n_train"])),
             "algorithm": ALGORITHMS[row["algorithm"]], "split": row["split"],
             "samples": float(row["samples_evaluated"]), "nats": float(row[value])}
            for row in rows]


def curves(panels, paper, key, ylabel, title, path):
    """One panel per entry of `panels` (panel name -> {algorithm: metrics rows}),
    side by side: minivae's train_<key> and test_<key> against samples_seen as
    lines (rows without the key are left out, e.g. epochs at which log p(x) was
    not tracked), and the `paper_points` rows of the same panel as markers of
    the same colour, on a log x-axis.  `key` is 'elbo' (Figure 2) or 'log_px'
    (Figure 3).  Every artist's label names it, e.g. 'minivae aevb train' or
    'paper aevb train'.  Saves the figure at `path` and returns it."""
    width, height = PANEL_SIZE
    fig = Figure(figsize=(width * len(panels) / DPI, height / DPI), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)           # no pyplot: nothing is left open, no display needed
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn = set()
    for ax, (panel, runs) in zip(axes, panels.items()):
        values = []
        for algorithm, rows in runs.items():
            drawn.add(algorithm)
            for split, style in LINES.items():
                kept = sorted((r["samples_seen"], r[f"{split}_{key}"]) for r in rows
                              if f"{split}_{key}" in r)
                values += [v for _, v in kept]
                ax.plot([s for s, _ in kept], [v for _, v in kept], style, lw=1.5,
                        color=COLOURS[algorithm], label=f"minivae {algorithm} {split}")
        for algorithm in COLOURS:
            for split, (marker, fill) in MARKERS.items():
                points = [(p["samples"], p["nats"]) for p in paper if p["panel"] == panel
                          and p["algorithm"] == algorithm and p["split"] == split]
                if points:
                    drawn.add(algorithm)
                    values += [v for _, v in points]
                    ax.plot(*zip(*points), ls="none", marker=marker, fillstyle=fill, ms=6,
                            color=COLOURS[algorithm], label=f"paper {algorithm} {split}")
        ax.set(xscale="log", title=panel, xlabel="training samples evaluated")
        if values:
            ax.set_ylim(*_y_range(values, [p["nats"] for p in paper if p["panel"] == panel]))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title)
    axes[0].legend(handles=_legend(drawn), loc="lower right", fontsize=7)
    fig.savefig(path, dpi=DPI)
    return fig


def _y_range(values, paper):
    """(bottom, top) of a panel: everything drawn up to its top, but not below
    the paper's lowest point by more than twice the span of its points, so
    that the first epochs of a run (thousands of nats down, for wake-sleep
    with 200 latent dimensions) do not squash the comparison into a line."""
    top, bottom = max(values), min(values)
    if paper:
        span = max(max(paper) - min(paper), 10.0)
        bottom = max(bottom, min(paper) - 2 * span)
    margin = 0.03 * (top - bottom) or 1.0
    return bottom - margin, top + margin


def _legend(algorithms):
    """Legend entries: a colour per algorithm drawn, then what lines and markers mean."""
    return [Line2D([], [], color=COLOURS[a], lw=4, label=NAMES[a]) for a in COLOURS
            if a in algorithms] + [
        Line2D([], [], color="k", ls=LINES["train"], label="minivae train (line)"),
        Line2D([], [], color="k", ls=LINES["test"], label="minivae test (dashed)"),
        Line2D([], [], color="k", ls="none", marker=MARKERS["train"][0], label="paper train"),
        Line2D([], [], color="k", ls="none", marker=MARKERS["test"][0], fillstyle="none",
               label="paper test")]
