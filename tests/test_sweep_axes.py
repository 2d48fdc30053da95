"""A sweep's axes in any order: the grid holds them ascending, so its figures and the
theory's curves, which interpolate along them, read the same whatever order the command
line gave."""

from gradlab.reports import sweep
from conftest import invoke


def test_the_grid_sorts_its_axes():
    grid = sweep.Grid(cells=("rnn_tanh",), weight_scales=(2.0, 0.5, 1.0), gate_biases=(1.0, 0.0))
    assert grid.weight_scales == (0.5, 1.0, 2.0) and grid.gate_biases == (0.0, 1.0)


def test_a_sweep_given_its_axes_out_of_order_is_the_sorted_one(tmp_path, monkeypatch):
    """Given 2,0.5,1 the critical line was drawn at the column labelled 1 and the
    theory's sentence named other crossings: the same report now, but for the command."""
    monkeypatch.chdir(tmp_path)
    common = ["--cells", "rnn_tanh,lstm", "--hidden", "8", "--steps", "20", "--max-steps",
              "40", "--batch", "2"]
    for out, scales, biases in (("a", "2,0.5,1", "1,0"), ("b", "0.5,1,2", "0,1")):
        result = invoke("sweep", *common, "--weight-scales", scales, "--gate-biases", biases,
                        "--out", out)
        assert result.exit_code == 0, result.output
    for name in ("data.json", "figures/phase.png", "figures/phase.svg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def words(folder):
        return [line for line in (tmp_path / folder / "report.md").read_text().splitlines()
                if not line.startswith("| command |")]
    assert words("a") == words("b")
