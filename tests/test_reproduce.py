"""`minivae reproduce FIGURE`: the paper's grids of runs (section 5), the commands
it prints for a batch scheduler, runs that are skipped, resumed or fail, and
the figures drawn over the paper's points.

Runs use the tiny MNIST (300 training, 100 test images) and 8 hidden units,
so a budget of 300 samples is one epoch; Figure 3's runs use 1,000 training
images of the embedded MNIST.
"""
import json
import os
import shlex
import shutil
import signal
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import matplotlib.image
import pytest
from tqdm import tqdm as real_tqdm

import minivae.train
from minivae import paper_figures, plots
from minivae.arguments import parser
from minivae.cli import main
from tests.conftest import run_cli as run, write_mnist
from tests.test_frey import mat_file, random_faces

REPO = Path(__file__).resolve().parent.parent
TINY = ["--hidden", "8", "--jobs", "2"]
FIG2 = [f"latent{j}-{a}" for j in (3, 5, 10, 20, 200) for a in ("aevb", "wake-sleep")]


@pytest.fixture(scope="module")
def frey_file(tmp_path_factory):
    """A synthetic frey_rawface.mat of 400 random faces: 200 to train on, 200 held out."""
    return mat_file(tmp_path_factory.mktemp("frey") / "frey_rawface.mat",
                    random_faces(n=400), compressed=True)



def commands(argv, capsys):
    """The token lists that `minivae reproduce ... --print-commands` prints."""
    code, out, err = run(["reproduce", *argv, "--print-commands"], capsys)
    assert code == 0, err
    return [shlex.split(line) for line in out.splitlines()]


def options(tokens):
    """{flag: its values as one string} of a `minivae train` token list."""
    found, flag = {}, None
    for token in tokens[2:]:
        if token.startswith("--"):
            flag = token
            found[flag] = ""
        else:
            found[flag] = (found[flag] + " " + token).strip()
    return found


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mtimes(out):
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/checkpoint.npz")}


# ---------------------------------------------------------------- the paper's grids

def test_fig2_is_aevb_and_wake_sleep_at_latent_3_5_10_20_200_with_500_hidden_units(
        tmp_path, capsys):
    lines = commands(["fig2", "--out", tmp_path / "out", "--budget", "6e5"], capsys)
    found = {(Path(o["--out"]).name, o["--latent"], o.get("--algorithm", "aevb"), o["--hidden"],
              o["--epochs"], o["--lr"]) for o in map(options, lines)}
    assert len(lines) == 10 and all(line[:2] == ["minivae", "train"] for line in lines)
    # 600,000 samples are 10 epochs of MNIST's 60,000 training images
    assert found == {(f"latent{j}-{a}", str(j), a, "500", "10", "0.02")
                     for j in (3, 5, 10, 20, 200) for a in ("aevb", "wake-sleep")}


def test_fig3_is_three_algorithms_on_1000_and_50000_points_with_100_hidden_units_latent_3(
        tmp_path, capsys):
    lines = commands(["fig3", "--out", tmp_path / "out", "--budget", "1e6"], capsys)
    found = {(Path(o["--out"]).name, o.get("--algorithm", "aevb"), o["--train-size"],
              o["--latent"], o["--hidden"], o["--epochs"]) for o in map(options, lines)}
    assert len(lines) == 6
    assert found == {(f"n{n}-{a}", a, str(n), "3", "100", str(1_000_000 // n))
                     for n in (1000, 50000) for a in ("aevb", "wake-sleep", "mcem")}
    assert all(int(options(line)["--track-log-px"]) >= 1 for line in lines)


def test_frey_is_aevb_and_wake_sleep_at_latent_2_5_10_20_with_200_hidden_units_gaussian():
    from minivae.reproduce import grid
    found = {(c.name, c.algorithm, c.flags["latent"], c.flags["hidden"], c.flags["decoder"],
              c.data) for c in grid("frey")}
    assert found == {(f"latent{j}-{a}", a, j, (200,), "gaussian", "frey")
                     for j in (2, 5, 10, 20) for a in ("aevb", "wake-sleep")}


def test_frey_commands_train_a_squashed_gaussian_decoder_on_the_frey_file(
        frey_file, tmp_path, capsys):
    lines = commands(["frey", "--frey", frey_file, "--out", tmp_path / "out", "--budget", "400"],
                     capsys)
    found = {(Path(o["--out"]).name, o["--latent"], o.get("--algorithm", "aevb"), o["--hidden"],
              o["--decoder"], o["--decoder-mean"], o["--data"], o["--epochs"])
             for o in map(options, lines)}
    # the synthetic file's 400 faces: 200 held out, 200 to train on, 2 epochs of 400 samples
    assert found == {(f"latent{j}-{a}", str(j), a, "200", "gaussian", "sigmoid",
                      f"frey:{frey_file}", "2")
                     for j in (2, 5, 10, 20) for a in ("aevb", "wake-sleep")}


def test_fig4_is_aevb_at_latent_2_on_mnist_and_with_frey_on_frey_face_too():
    from minivae.reproduce import grid
    assert [(c.name, c.algorithm, c.flags["latent"], c.flags["hidden"], c.data)
            for c in grid("fig4", frey=True)] == [("mnist-latent2", "aevb", 2, (500,), "mnist"),
                                                  ("frey-latent2", "aevb", 2, (200,), "frey")]
    assert [c.name for c in grid("fig4")] == ["mnist-latent2"]


def test_print_commands_runs_nothing_and_every_line_parses_as_minivae_train(
        tmp_path, capsys, data_dir, frey_file):
    out = tmp_path / "out"
    lines = commands(["fig4", "--out", out, "--data", data_dir], capsys) + \
        commands(["fig2", "--out", out], capsys) + commands(["fig3", "--out", out], capsys)
    lines += commands(["fig4", "--out", out, "--frey", frey_file, "--only", "frey-*"], capsys)
    lines += commands(["frey", "--out", out, "--frey", frey_file], capsys)
    assert len(lines) == 1 + 10 + 6 + 1 + 8
    assert not out.exists()
    algorithms = []
    for line in lines:
        args = parser().parse_args(line[1:])
        assert args.command == "train" and args.no_progress and args.out.startswith(str(out))
        algorithms.append(getattr(args, "algorithm", None) or "aevb")
    assert sorted(set(algorithms)) == ["aevb", "mcem", "wake-sleep"]
    assert algorithms.count("mcem") == 2 and algorithms.count("wake-sleep") == 5 + 2 + 4


def test_a_budget_may_be_written_1e8_and_rounds_epochs_up(tmp_path, capsys):
    lines = commands(["fig3", "--out", tmp_path, "--budget", "1e8", "--only", "n1000-aevb"],
                     capsys) + commands(["fig3", "--out", tmp_path, "--budget", "50001",
                                         "--only", "n50000-aevb"], capsys)
    assert [options(line)["--epochs"] for line in lines] == ["100000", "2"]


# ---------------------------------------------------------------- runs

@pytest.fixture(scope="module")
def grid_run(data_dir, tmp_path_factory):
    """fig2's ten runs on the tiny MNIST, one epoch each: (out, code, stdout, stderr)."""
    out = tmp_path_factory.mktemp("reproduce") / "fig2"
    stdout, stderr = StringIO(), StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["reproduce", "fig2", "--data", str(data_dir), "--out", str(out),
                     "--budget", "300", *TINY])
    return out, code, stdout.getvalue(), stderr.getvalue()


def test_a_grid_run_trains_every_run_in_its_directory_and_draws_the_figure(grid_run):
    out, code, stdout, stderr = grid_run
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(FIG2)
    for name in FIG2:
        assert (out / name / "checkpoint.npz").is_file()
        assert [(r["epoch"], r["samples_seen"]) for r in rows(out / name)] == [(1, 300)]
        assert (out / name / "train.log").read_text().startswith("$ minivae train --out")
    width, height = matplotlib.image.imread(out / "figure2.png").shape[1::-1]
    assert width == 5 * paper_figures.PANEL_SIZE[0] and height == paper_figures.PANEL_SIZE[1]
    assert stdout.splitlines()[0].startswith("minivae reproduce fig2: 10 runs")
    for name in FIG2:
        config = json.loads((out / name / "config.json").read_text())
        assert config["optimizer"]["algorithm"] == name.split("-", 1)[1]
    assert "the paper: up to 2.5e8" in stdout.splitlines()[0]


def test_a_second_invocation_skips_the_finished_runs(grid_run, data_dir, capsys):
    out = grid_run[0]
    before = mtimes(out)
    code, stdout, err = run(["reproduce", "fig2", "--data", data_dir, "--out", out,
                             "--budget", "300", *TINY], capsys)
    assert code == 0, err
    assert stdout.count("skipped, finished (epoch 1 of 1)") == 10 and "trained" not in stdout
    assert mtimes(out) == before and len(before) == 10


def test_a_larger_budget_resumes_the_runs_and_keeps_their_rows(
        grid_run, data_dir, tmp_path, capsys):
    out = tmp_path / "fig2"
    shutil.copytree(grid_run[0], out)
    code, stdout, err = run(["reproduce", "fig2", "--data", data_dir, "--out", out,
                             "--budget", "900", "--only", "latent3-aevb", *TINY], capsys)
    assert code == 0, err
    assert "latent3-aevb: resuming at epoch 1 of 3" in stdout
    resumed = rows(out / "latent3-aevb")
    assert [r["samples_seen"] for r in resumed] == [300, 600, 900]
    assert resumed[0] == rows(grid_run[0] / "latent3-aevb")[0]
    log = (out / "latent3-aevb" / "train.log").read_text()
    assert f"$ minivae train --resume {out / 'latent3-aevb'} --epochs 3" in log


def test_an_interrupted_run_is_resumed(data_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "fig2"
    flags = ["fig2", "--data", data_dir, "--out", out, "--budget", "900",
             "--only", "latent3-aevb", *TINY]
    [line] = commands(flags, capsys)

    class InterruptingTqdm(real_tqdm):      # Ctrl-C after the first step of epoch 1
        def update(self, n=1):
            result = super().update(n)
            os.kill(os.getpid(), signal.SIGINT)
            return result
    monkeypatch.setattr(minivae.train, "tqdm", InterruptingTqdm)
    assert run(line[1:], capsys)[0] == 130
    monkeypatch.undo()
    code, stdout, err = run(["reproduce", *flags], capsys)
    assert code == 0, err
    assert "latent3-aevb: resuming at epoch 0 of 3" in stdout
    assert [r["epoch"] for r in rows(out / "latent3-aevb")] == [1, 2, 3]


def test_a_failing_run_is_one_line_with_its_log_and_the_others_go_on(
        data_dir, tmp_path, capsys):
    out = tmp_path / "fig2"
    (out / "latent5-aevb").mkdir(parents=True)
    (out / "latent5-aevb" / "checkpoint.npz").write_bytes(b"not a checkpoint")
    code, stdout, err = run(["reproduce", "fig2", "--data", data_dir, "--out", out,
                             "--budget", "300", "--only", "latent3-aevb", "latent5-aevb",
                             *TINY], capsys)
    assert code == 1
    [line] = err.splitlines()
    assert "latent5-aevb failed" in line and str(out / "latent5-aevb" / "train.log") in line
    assert "not a readable checkpoint" in line
    assert [r["epoch"] for r in rows(out / "latent3-aevb")] == [1]
    assert (out / "figure2.png").is_file()


@pytest.mark.parametrize("on_data_dir, other, says", [
    (True, ["--budget", "600", "--hidden", "16"], "--hidden saved 8, given 16"),
    (False, ["--budget", "600000", "--hidden", "8"], "--data saved"),   # MNIST, not data_dir
], ids=["other-settings", "other-data"])
def test_a_run_directory_of_another_run_is_refused_not_trained_or_resumed(
        on_data_dir, other, says, grid_run, data_dir, tmp_path, capsys):
    out = tmp_path / "fig2"
    shutil.copytree(grid_run[0], out)
    before = mtimes(out)
    data = ["--data", data_dir] if on_data_dir else []
    code, stdout, err = run(["reproduce", "fig2", *data, "--out", out, "--only", "latent3-aevb",
                             *other], capsys)
    assert code == 1
    [line] = err.splitlines()
    assert "latent3-aevb" in line and says in line
    assert mtimes(out) == before


def test_a_training_size_beyond_the_data_is_one_line_before_anything_runs(
        data_dir, tmp_path, capsys):
    code, stdout, err = run(["reproduce", "fig3", "--data", data_dir, "--out", tmp_path / "o",
                             "--print-commands"], capsys)
    assert code == 2 and stdout == ""
    [line] = err.splitlines()
    assert "n1000-aevb trains on 1,000 images, but the data has 300 training images" in line
    assert not (tmp_path / "o").exists()


def test_fig4_draws_the_manifold_of_its_run(data_dir, tmp_path, capsys):
    code, stdout, err = run(["reproduce", "fig4", "--data", data_dir, "--out", tmp_path,
                             "--budget", "300", *TINY], capsys)
    assert code == 0, err
    width, height = plots.SIZES["manifold"]
    assert matplotlib.image.imread(tmp_path / "figure4-mnist.png").shape[:2] == (height, width)


def test_frey_on_a_synthetic_file_trains_its_runs_and_draws_the_frey_panels(
        frey_file, tmp_path, capsys):
    code, stdout, err = run(["reproduce", "frey", "--frey", frey_file, "--out", tmp_path,
                             "--budget", "200", "--only", "latent2-aevb", "latent2-wake-sleep",
                             "latent20-aevb", *TINY], capsys)
    assert code == 0, err
    for name in ("latent2-aevb", "latent2-wake-sleep", "latent20-aevb"):
        assert [r["samples_seen"] for r in rows(tmp_path / name)] == [200]
    width, height = matplotlib.image.imread(tmp_path / "figure2-frey.png").shape[1::-1]
    assert width == 4 * paper_figures.PANEL_SIZE[0]


def test_fig4_with_frey_draws_both_manifolds(data_dir, frey_file, tmp_path, capsys):
    code, stdout, err = run(["reproduce", "fig4", "--data", data_dir, "--frey", frey_file,
                             "--out", tmp_path, "--budget", "300", *TINY], capsys)
    assert code == 0, err
    assert {p.name for p in tmp_path.glob("*.png")} == {"figure4-mnist.png", "figure4-frey.png"}


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, exit_code, says", [
    (["fig5"], 2, "fig5"),
    (["fig2", "--budget", "0"], 2, "--budget"),
    (["fig2", "--budget", "1.5"], 2, "--budget"),
    (["fig2", "--jobs", "0"], 2, "--jobs"),
    (["frey"], 2, "--frey"),
    (["frey", "--frey", "missing.mat"], 2, "missing.mat"),
    (["fig2", "--frey", "setup.cfg"], 2, "--frey"),
    (["fig2", "--only", "latent7-*"], 2, "latent7-*"),
    (["fig2", "--print-commands", "--plot-only"], 2, "--plot-only"),
    (["frey", "--frey", "setup.cfg", "--data", "."], 2, "--data"),
])
def test_bad_input_is_a_one_line_error(capsys, monkeypatch, argv, exit_code, says):
    monkeypatch.chdir(REPO)
    code, out, err = run(["reproduce", *argv], capsys)
    assert code == exit_code
    assert len(err.strip().splitlines()) == 1 and says in err and "Traceback" not in err


def test_plot_only_without_runs_is_a_one_line_error(tmp_path, capsys):
    code, out, err = run(["reproduce", "fig3", "--out", tmp_path, "--plot-only"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "no run" in err


def test_reproduce_help_states_each_default_and_each_figures_time(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(["reproduce", "--help"], capsys)
    assert code == 0
    for flag in ("--budget", "--out", "--jobs", "--print-commands", "--plot-only", "--frey",
                 "--data", "--hidden", "--only"):
        assert flag in out
    assert out.count("(default:") == 9
    for figure, budget in (("fig2", "300,000"), ("frey", "200,000"), ("fig3", "500,000"),
                           ("fig4", "1,200,000")):
        assert f"{figure}  " in out and f"--budget {budget}:" in " ".join(out.split())


# ---------------------------------------------------------------- the paper's points

def test_the_paper_points_ship_in_the_package_with_their_row_counts():
    assert paper_figures.PAPER.parent == REPO / "minivae"
    figure2, figure3 = paper_figures.paper_points("figure2"), paper_figures.paper_points("figure3")
    assert len(figure2) == 144 and len(figure3) == 40
    assert figure2[0] == {"panel": "MNIST, latent 3", "algorithm": "wake-sleep", "split": "test",
                          "samples": 1e6, "nats": -155.1}
    assert {p["panel"] for p in figure3} == {"N = 1,000", "N = 50,000"}
    assert sorted({p["algorithm"] for p in figure3}) == ["aevb", "mcem", "wake-sleep"]

def test_the_wheel_ships_the_paper_points_and_every_package_data_pattern_matches_a_file():
    from setuptools.config.setupcfg import read_configuration   # how setuptools reads it
    patterns = read_configuration(REPO / "setup.cfg")["options"]["package_data"]["minivae"]
    assert {"paper/*.csv", "paper/README.md"} <= set(patterns)
    assert all(list((REPO / "minivae").glob(pattern)) for pattern in patterns), patterns


def fake_rows(epochs, n, log_px_at=()):
    """Metrics rows of a run of n images a epoch; log p(x) at the epochs `log_px_at`."""
    return [{"epoch": e, "samples_seen": e * n, "train_elbo": -200.0 + e, "test_elbo": -201.0 + e,
             **({"train_log_px": -190.0 + e, "test_log_px": -191.0 + e} if e in log_px_at
                else {})} for e in range(1, epochs + 1)]


def test_a_panel_keeps_the_papers_points_in_view_beside_a_run_that_starts_far_below(tmp_path):
    low = fake_rows(3, 1000)
    low[0]["train_elbo"] = low[0]["test_elbo"] = -14000.0   # wake-sleep's first epoch at J = 200
    fig = paper_figures.curves({"MNIST, latent 3": {"wake-sleep": low}},
                               paper_figures.paper_points("figure2"), "elbo", "nats", "t",
                               tmp_path / "f.png")
    bottom, top = fig.axes[0].get_ylim()
    # the paper's points of this panel span -157.1 .. -127.9: at most 2 spans below
    assert -157.1 - 2 * 29.2 - 5 < bottom < -157.1 and top > -127.9
    assert max(r["train_elbo"] for r in low) <= top


def test_curves_draw_minivae_as_lines_and_the_paper_as_markers_of_the_same_colour(tmp_path):
    rows_of = {"aevb": fake_rows(3, 1000), "wake-sleep": fake_rows(3, 1000)}
    fig = paper_figures.curves({"MNIST, latent 3": rows_of}, paper_figures.paper_points("figure2"),
                               "elbo", "nats", "a title", tmp_path / "f.png")
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    paper, ours = lines["paper aevb train"], lines["minivae aevb train"]
    assert list(paper.get_xdata()) == [1e6, 1e7, 1e8, 2.51e8]
    assert list(paper.get_ydata()) == [-155.3, -138.3, -130.3, -127.9]
    assert paper.get_linestyle() == "None" and paper.get_marker() == "o"
    assert list(ours.get_xdata()) == [1000, 2000, 3000] and ours.get_marker() == "None"
    assert paper.get_color() == ours.get_color() != lines["minivae wake-sleep train"].get_color()
    assert list(lines["paper wake-sleep test"].get_ydata()) == [-155.1, -144.8, -138.9, -137.4]
    assert fig.axes[0].get_xscale() == "log"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert {"AEVB", "wake-sleep", "minivae train (line)", "paper train"} <= set(legend)


@pytest.fixture(scope="module")
def mnist_1000(tmp_path_factory):
    """An MNIST directory of the first 1,000 training and 100 test images."""
    return write_mnist(tmp_path_factory.mktemp("mnist_1000"), 1000, 100)


def test_fig3_trains_aevb_wake_sleep_and_mcem_on_1000_points_and_tracks_log_px(
        mnist_1000, tmp_path, capsys):
    names = ["n1000-aevb", "n1000-wake-sleep", "n1000-mcem"]
    code, stdout, err = run(["reproduce", "fig3", "--data", mnist_1000, "--out", tmp_path,
                             "--budget", "2000", "--only", "n1000-*", *TINY], capsys)
    assert code == 0, err
    for name in names:
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["optimizer"]["algorithm"] == name.split("-", 1)[1]
        assert config["data"]["train_size"] == 1000 and config["model"]["latent"] == 3
        assert config["data"]["binarize"] == "static"
        found = rows(tmp_path / name)
        assert [r["samples_seen"] for r in found] == [1000, 2000]
        # 1000 passes 1, 2, 5, ..., 1000; 2000 passes 2000 and is the last epoch
        for r in found:
            assert r["train_log_px"] < 0 and r["test_log_px"] < 0
            assert r["test_log_px"] > r["test_elbo"] - 1   # K = 100 samples on 100 images
    assert (tmp_path / "figure3.png").is_file()


def test_plot_only_draws_figure3_from_the_tracked_rows_within_the_budget(
        tmp_path, capsys, monkeypatch):
    drawn, real = [], paper_figures.curves
    monkeypatch.setattr(paper_figures, "curves",
                        lambda *args: drawn.append(real(*args)) or drawn[-1])
    for name, n in (("n1000-aevb", 1000), ("n1000-mcem", 1000), ("n50000-wake-sleep", 50000)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in fake_rows(8, n, log_px_at=(1, 2, 5, 8))))
    code, out, err = run(["reproduce", "fig3", "--out", tmp_path, "--plot-only",
                          "--budget", "5000"], capsys)
    assert code == 0, err
    assert (tmp_path / "figure3.png").is_file()
    [fig] = drawn
    assert "5,000 samples evaluated a curve" in fig._suptitle.get_text()
    small, large = ({line.get_label(): line for line in ax.lines} for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == ["N = 1,000", "N = 50,000"]
    # epochs 1, 2, 5 hold log p(x); epoch 8 lies beyond the budget's 5 epochs
    assert list(small["minivae aevb test"].get_xdata()) == [1000, 2000, 5000]
    assert list(small["minivae mcem train"].get_ydata()) == [-189.0, -188.0, -185.0]
    assert list(large["minivae wake-sleep train"].get_xdata()) == [50000]
    assert list(small["paper mcem train"].get_ydata()) == [-118.3, -111.5, -109.2]
    assert list(large["paper aevb test"].get_xdata()) == [1e7, 3e7, 6e7, 6.8e7]
