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


def test_parts_written_before_the_axes_were_sorted_still_merge(tmp_path, monkeypatch):
    """A part written before the grid sorted its axes measured a cell without a gate bias
    at the first gate bias as typed ("1,0": at 1), which the sorted grid no longer lists
    for it: the merge refused such parts ("not on the grid"). That cell's one gate bias
    is any of the grid's, and it merges as the sorted run's."""
    import hashlib
    import json
    monkeypatch.chdir(tmp_path)
    common = ["--cells", "rnn_tanh,gru", "--hidden", "6", "--steps", "12", "--max-steps",
              "12", "--batch", "2", "--inputs", "3", "--weight-scales", "0.5,2",
              "--gate-biases", "0,1"]
    for i in (1, 2):
        assert invoke("sweep", *common, "--shard", f"{i}/2", "--out", f"p{i}").exit_code == 0
    assert invoke("sweep", "merge", "p1", "p2", "--out", "new").exit_code == 0
    for i in (1, 2):                      # as the older gradlab wrote them, given "1,0"
        part, manifest = tmp_path / f"p{i}" / "part.json", tmp_path / f"p{i}" / \
            ".gradlab-manifest.json"
        data = json.loads(part.read_text())
        data["grid"]["gate_biases"] = [1.0, 0.0]
        for p in data["points"]:
            p["gate_bias"] = 1.0 if p["cell"] == "rnn_tanh" else p["gate_bias"]
        part.write_text(json.dumps(data))
        listed = json.loads(manifest.read_text())
        listed["files"]["part.json"] = hashlib.sha256(part.read_bytes()).hexdigest()
        manifest.write_text(json.dumps(listed))
    result = invoke("sweep", "merge", "p1", "p2", "--out", "old")
    assert result.exit_code == 0, result.output
    points = [json.loads((tmp_path / d / "data.json").read_text())["points"]
              for d in ("old", "new")]
    assert points[0] == points[1]
