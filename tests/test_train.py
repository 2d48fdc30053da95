"""gradlab train: the task generators, the training loop, the learnability report (its text
follows its numbers, on synthetic data too), the character LSTM, the drift caption of the
gradient-decay report, and the CLI command."""

import math

import numpy as np
import pytest
import torch

from conftest import assert_ok, assert_one_line_error, invoke
from gradlab.errors import GradlabError
from gradlab.reports.gradient_decay import drift_caption
from gradlab.reports.measurements import Setup
from gradlab.reports.publish import loads
from gradlab.training import charlm, learnability as ln, loop, tasks


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- tasks --------------------------------------------------------------------------------
def test_adding_target_is_the_sum_of_the_marked_values():
    task = tasks.adding(12)
    b = task.batch(64, gen(), dtype=torch.float64)
    assert b.xs.shape == (12, 64, 2) and b.target.shape == (64,) and b.mask is None
    values, marks = b.xs[..., 0], b.xs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (marks.sum(0) == 2).all()
    assert (marks[:6].sum(0) == 1).all() and (marks[6:].sum(0) == 1).all()   # one per half
    torch.testing.assert_close(b.target, (values * marks).sum(0))


def test_copy_target_is_the_input_delayed():
    D, L, K = 7, 3, 5
    task = tasks.copy(D, length=L, symbols=K)
    b = task.batch(32, gen(), dtype=torch.float64)
    assert b.xs.shape == (D + L, 32, K + 2) and b.target.shape == (D + L, 32)
    assert torch.equal(b.mask.any(1), torch.arange(D + L) >= D)
    shown = b.xs.argmax(-1)                                    # 0: blank, 1..K: symbols
    assert ((shown[:L] >= 1) & (shown[:L] <= K)).all() and (b.xs[L:, :, 1:K + 1] == 0).all()
    for t in range(D, D + L):
        assert torch.equal(b.target[t] + 1, shown[t - D])      # the input, D steps later
    assert (b.xs[D - 1, :, K + 1] == 1).all() and b.xs[..., K + 1].sum() == 32   # the cue


def test_parity_target():
    b = tasks.parity(9).batch(40, gen(), dtype=torch.float64)
    assert b.xs.shape == (9, 40, 1)
    assert torch.equal(b.target, ((b.xs[..., 0] > 0).sum(0) % 2))


@pytest.mark.parametrize("task", [tasks.adding(10), tasks.copy(5, length=2), tasks.parity(6)])
def test_tasks_are_deterministic(task):
    a, b, c = (task.batch(8, gen(s)) for s in (3, 3, 4))
    assert torch.equal(a.xs, b.xs) and torch.equal(a.target, b.target)
    assert not torch.equal(a.xs, c.xs)


@pytest.mark.parametrize("make", [lambda: tasks.make("nope", 3), lambda: tasks.copy(0),
                                  lambda: tasks.copy(3, length=4), lambda: tasks.adding(1),
                                  lambda: ln.parse_tasks("adding:x"),
                                  lambda: ln.parse_tasks("adding:5,adding:5")])
def test_bad_tasks_are_one_line_errors(make):
    with pytest.raises(GradlabError) as e:
        make()
    assert "\n" not in str(e.value)


# -- training -----------------------------------------------------------------------------
TINY = loop.TrainSetup(hidden=8, batch=16, steps=40, lr=3e-2, measure_batch=2,
                       probe_steps=8, test_batch=64, drift_steps=5)


def test_step_is_differentiable_through_time():
    model = loop.Model("lstm", tasks.copy(3), TINY, 0)
    loss, _, _ = model.loss(tasks.copy(3).batch(4, gen()))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.leaves())
    assert float(model.params["W_i"].grad.norm()) > 0       # reached through the state


def test_training_reduces_the_loss_and_is_deterministic():
    record = loop.train("gru", tasks.copy(2), TINY)
    again = loop.train("gru", tasks.copy(2), TINY)
    first, last = record["checkpoints"][0], record["checkpoints"][-1]
    assert last["step"] == 40 and first["step"] == 0
    assert last["loss"] < 0.5 * first["loss"]
    assert record["loss"] == again["loss"] and record["final"] == again["final"]
    assert len(record["state_rms"]) == 40
    assert np.isfinite(record["write_gate"][:5]).all() and np.isnan(record["write_gate"][5:]).all()
    assert math.isfinite(last["lyapunov"]) and last["timescale"] > 0


def test_verdict_against_chance():
    adding, copy = tasks.adding(5), tasks.copy(5)
    assert loop.verdict(adding, 0.01, None) == "learned"           # 6% of 1/6
    assert loop.verdict(adding, 0.05, None) == "partly"
    assert loop.verdict(adding, 0.16, None) == "not learned"
    assert loop.verdict(copy, 0.1, 0.8) == "partly"                 # loss low, accuracy not
    assert loop.verdict(copy, math.nan, None) == "diverged"


# -- the report's text follows its numbers ------------------------------------------------
def fake_run(cell, delay, verdict, rms, lyapunov=-0.1, task="adding"):
    steps = len(rms)
    point = {"rate": -0.1, "timescale": 10.0, "why": None, "words": None,
             "lyapunov": lyapunov, "loss": 0.01, "accuracy": None, "state_rms": rms[-1],
             "write_gate": 0.5, "saturation": 0.0}
    return {"cell": cell, "task": task, "delay": delay, "steps": list(range(steps)),
            "loss": [0.1] * steps, "state_rms": list(rms), "write_gate": [0.5] * steps,
            "saturation": [0.0] * steps, "verdict": verdict,
            "checkpoints": [{**point, "step": 0}, {**point, "step": steps}],
            "final": {"loss": 0.01 if verdict == "learned" else 0.2, "accuracy": None,
                      "step": steps}}


FLAT, GROWING = [0.5] * 20, list(np.linspace(0.5, 8, 20))


def test_drift_text_says_when_the_prototype_does_not_drift():
    runs = [fake_run("prototype_lstm", 10, "learned", FLAT),
            fake_run("gru", 10, "learned", FLAT)]
    text, numbers = ln.drift_findings(runs, 20)
    assert "disagrees with the essay" in text and "did not drift" in text
    assert not numbers["prototype_drifts"] and "As the essay claims" not in text
    assert "not chaotic" in text


def test_drift_text_confirms_the_seed_only_when_measured():
    runs = [fake_run("prototype_lstm", 10, "learned", GROWING, lyapunov=0.05),
            fake_run("gru", 10, "learned", FLAT), fake_run("pseudo_lstm", 10, "learned", FLAT)]
    text, numbers = ln.drift_findings(runs, 20)
    assert numbers["prototype_drifts"] and numbers["prototype_chaotic"]
    assert "As the essay claims" in text and "×16" in text and "disagrees" not in text
    runs[1] = fake_run("gru", 10, "learned", list(np.linspace(0.1, 0.9, 20)))
    text, numbers = ln.drift_findings(runs, 20)     # x9, but within the unit range: no drift
    assert numbers["bounded_drifting"] == [] and "As the essay claims" in text
    runs[1] = fake_run("gru", 10, "learned", GROWING)              # a bounded cell drifts too
    text, numbers = ln.drift_findings(runs, 20)
    assert numbers["bounded_drifting"] == ["gru"] and "disagrees with the essay there" in text


def test_vanilla_text_follows_the_verdicts():
    runs = [fake_run("rnn_tanh", 10, "learned", FLAT), fake_run("rnn_tanh", 50, "not learned", FLAT),
            fake_run("lstm", 10, "learned", FLAT), fake_run("lstm", 50, "learned", FLAT)]
    text, numbers = ln.vanilla_findings(runs)
    assert "As the essay claims" in text and numbers["adding"]["claim_holds"]
    runs[1] = fake_run("rnn_tanh", 50, "learned", FLAT)
    runs[3] = fake_run("lstm", 50, "partly", FLAT)
    text, numbers = ln.vanilla_findings(runs)
    assert "does not show the essay's claim" in text and not numbers["adding"]["claim_holds"]
    assert "lstm learned less far than the vanilla RNN (50)" in text


def test_a_cell_that_learned_nothing_is_said_so_with_the_delays_tried():
    """It read 'rnn_tanh learned at no delay' (as if at delay 0) and 'the longest delay a
    vanilla RNN learned is none'."""
    runs = [fake_run("rnn_tanh", 10, "not learned", FLAT), fake_run("rnn_tanh", 30, "partly", FLAT),
            fake_run("lstm", 10, "learned", FLAT), fake_run("lstm", 30, "learned", FLAT)]
    text, numbers = ln.vanilla_findings(runs)
    # (the partly verdict the table shows is said too: the summary left it out)
    assert "rnn_tanh learned at none of the delays tried (10, 30), partly at 30;" in text
    assert "lstm learned at delay 10, 30." in text
    assert "the vanilla RNN learned at none of the delays tried, while lstm learned up to 30" in text
    assert "no delay" not in text and "is none" not in text
    assert numbers["adding"]["vanilla_longest"] == 0 and numbers["adding"]["claim_holds"]


def test_report_writer_at_tiny_sizes(tmp_path):
    setup = ln.LearnSetup(cells=("rnn_tanh", "prototype_lstm"), tasks=(("copy", 2),),
                          hidden=4, batch=8, steps=6, drift_steps=3, char_steps=0)
    out = ln.report(setup, tmp_path / "learn")
    for name in ("index.html", "report.md", "data.json", *(f"figures/{f}.{e}" for f in (
            "learning", "timescales", "drift") for e in ("png", "svg"))):
        assert (out / name).is_file(), name
    data = loads((out / "data.json").read_text())
    again = loop.train("prototype_lstm", tasks.copy(2), setup.train_setup())
    stored = next(r for r in data["runs"] if r["cell"] == "prototype_lstm")
    assert stored["final"]["loss"] == pytest.approx(again["final"]["loss"], rel=1e-9)
    assert stored["state_rms"] == pytest.approx(again["state_rms"], rel=1e-9)
    text, _ = ln.drift_findings(data["runs"], 3)
    assert text in (out / "report.md").read_text()
    proto = data["findings"]["drift"]["cells"]["prototype_lstm"]
    assert data["findings"]["drift"]["prototype_drifts"] == (
        proto["growth"] >= ln.DRIFT and proto["rms_peak"] > ln.LARGE)


# -- the character-level LSTM --------------------------------------------------------------
def test_charlm_corpus_ships_with_python_and_training_is_measured():
    name, text = charlm.corpus()
    assert len(text) > 500 and name
    ids = charlm.encode("ab\n\u00e9")
    assert ids.tolist()[-1] == len(charlm.ALPHABET) and ids.max() <= len(charlm.ALPHABET)
    setup = charlm.CharSetup(hidden=8, embed=4, steps=20, window=16, batch=8,
                             measure_steps=20, measure_batch=2, lr=3e-2)
    record = charlm.train_charlm(setup)
    assert record["trained"]["bits"] < record["init"]["bits"]
    assert math.isfinite(record["trained"]["rate"]) and len(record["train_bits"]) == 20


# -- the gradient-decay report's drift caption ------------------------------------------------
def test_drift_caption_is_computed_from_the_rms():
    setup = Setup(cells=("prototype_lstm", "gru"), steps=100)
    flat = {"drift": {"rms": np.r_[0.0, np.full(100, 0.5)]}}
    grows = {"drift": {"rms": np.r_[0.0, np.linspace(0.1, 5.0, 100)]}}
    text = drift_caption(setup, {"prototype_lstm": flat, "gru": flat}, ["prototype_lstm", "gru"])
    assert "shows no internal state drift" in text and "×1" in text
    text = drift_caption(setup, {"prototype_lstm": grows, "gru": flat}, ["prototype_lstm", "gru"])
    assert "grows here while those of the bounded cells measured (gru) do not" in text
    assert "no internal state drift" not in text


# -- the command ------------------------------------------------------------------------------
@pytest.mark.parametrize("args, needle", [
    (["--tasks", "bogus:3"], "unknown task"), (["--tasks", "copy:0"], "copy delay"),
    (["--tasks", "adding"], "NAME:DELAY"), (["--cells", "nope"], "unknown cell"),
    (["--steps", "0"], "--steps"), (["--lr", "nan"], "--lr")])
def test_train_errors_are_one_line(args, needle, tmp_path):
    assert_one_line_error(invoke("train", *args, "--out", tmp_path / "r"), needle)


def test_train_refuses_a_folder_it_does_not_own(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "mine.txt").write_text("mine")
    assert_one_line_error(invoke("train", "--out", tmp_path / "r"), "gradlab did not write")
    assert (tmp_path / "r" / "mine.txt").read_text() == "mine"


def test_train_tiny_run(tmp_path):
    result = invoke("train", "--cells", "rnn_tanh,gru", "--tasks", "copy:2", "--steps", "3",
                    "--hidden", "4", "--batch", "4", "--char-steps", "0", "--drift-steps", "2",
                    "--out", tmp_path / "r")
    assert_ok(result)
    data = loads((tmp_path / "r" / "data.json").read_text())
    assert [(r["cell"], r["task"], r["delay"]) for r in data["runs"]] == [
        ("rnn_tanh", "copy", 2), ("gru", "copy", 2)]
    assert data["charlm"] is None and "trained gru copy@2" in result.stderr


def test_a_char_lm_whose_weights_diverged_is_recorded_not_crashed():
    """from_torch refuses nan weights; the character model's flow checkpoint read them
    through it and ended the whole training run."""
    setup = charlm.CharSetup(hidden=3, embed=2, measure_steps=6, measure_batch=1)
    model = charlm.CharLSTM(len(charlm.ALPHABET) + 1, setup)
    with torch.no_grad():
        model.lstm.weight_hh_l0[0, 0] = float("nan")
    record = charlm._flow(model, charlm.encode("hello world, hello world"), setup)
    assert record["why"] == "weights diverged" and math.isnan(record["rate"])


def test_a_file_cell_is_trained_under_the_name_it_was_given(tmp_path, monkeypatch):
    """A file's cell was recorded by its declared name: the figures' colours, keyed by
    the spec, then failed (KeyError, after all the training), and one declared as lstm
    was merged with the built-in lstm in the findings."""
    (tmp_path / "shadow.py").write_text(
        "import gradlab\nfrom gradlab import tanh\n"
        "@gradlab.declare(state='h', params='W U b', source='mine', name='lstm')\n"
        "def c(s):\n    return tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--cells", "lstm,shadow.py:c", "--tasks", "adding:3", "--steps",
                    "3", "--hidden", "4", "--batch", "2", "--char-steps", "0", "--out", "r")
    assert_ok(result)
    data = loads((tmp_path / "r" / "data.json").read_text())
    assert [r["cell"] for r in data["runs"]] == ["lstm", "shadow.py:c"]
    report = (tmp_path / "r" / "report.md").read_text()
    assert "| lstm | adding | 3 |" in report and "| shadow.py:c | adding | 3 |" in report


def test_a_run_whose_loss_blows_up_between_points_is_diverged():
    """At lr 1e30 the training loss was inf at step 1, but the only measurement point was
    step 0, so the verdict came from the initial test loss ('not learned'; a late blow-up
    could have read 'learned'). The model is measured where it diverged, and the run is
    'diverged'."""
    setup = loop.TrainSetup(hidden=3, batch=2, steps=30, lr=1e30, checkpoints=1,
                            drift_steps=0, probe_steps=4, test_batch=4, measure_batch=2)
    record = loop.train("rnn_tanh", tasks.TASKS["adding"](3), setup)
    assert record["verdict"] == "diverged"
    stopped = len(record["loss"]) - 1
    assert not math.isfinite(record["loss"][-1]) and record["final"]["step"] == stopped > 0


@pytest.mark.parametrize("field,value,says", [
    ("lr", math.nan, "lr must be a finite real number"), ("lr", 0, "lr must be"),
    ("batch", 0, "batch must be an integer >= 1"), ("steps", -3, "steps must be an integer"),
    ("clip", math.nan, "clip must be a finite real number")])
def test_a_train_setup_refuses_numbers_no_run_can_use(field, value, says):
    with pytest.raises(GradlabError, match=says):
        loop.TrainSetup(**{field: value})


def test_a_train_setup_refuses_a_float32_rate_adam_cannot_hold():
    """TrainSetup(lr=1e38) in float32 trained into torch's 'value cannot be converted to
    type float without overflow' at Adam's first step (10 lr); float64 runs (to a
    divergence verdict)."""
    with pytest.raises(GradlabError, match=r"lr 1e\+38 does not fit float32: .* at most 3.4e\+37"):
        loop.TrainSetup(lr=1e38)
    assert loop.TrainSetup(lr=1e38, dtype="float64").lr == 1e38


def test_the_report_is_the_same_whatever_the_thread_count(tmp_path):
    """The character model's float32 sums depend on torch's thread count: its bits moved
    in the 7th digit between OMP_NUM_THREADS=1 and 2, for the same seed."""
    import torch
    run = ("train", "--cells", "rnn_tanh", "--tasks", "adding:3", "--hidden", "4", "--steps",
           "5", "--batch", "2", "--drift-steps", "2", "--char-steps", "3")
    saved = torch.get_num_threads()
    try:
        for threads, out in ((2, "a"), (1, "b")):
            torch.set_num_threads(threads)
            result = invoke(*run, "--out", tmp_path / out)
            assert result.exit_code == 0, result.output
    finally:
        torch.set_num_threads(saved)
    assert torch.get_num_threads() == saved
    assert (tmp_path / "a" / "data.json").read_bytes() == (tmp_path / "b" / "data.json").read_bytes()


def test_charlm_figure_counts_training_steps_from_zero_as_the_drift_figure_does():
    """Entry i of train_bits is the loss before update i (the model after i steps), as
    entry i of a run's state_rms is: both figures put it at training step i (the loss
    curve started at 1 while the drift figure's started at 0)."""
    from gradlab.training import figures
    record = {"train_bits": [6.0, 5.0, 4.0], "unigram_bits": 4.5, "corpus": "c",
              "trained": {"bits": 3.9}}
    line = figures.charlm(record).axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 1, 2]
    run = {"cell": "lstm", "state_rms": [1.0, 2.0, 3.0], "write_gate": [0.5] * 3}
    top = figures.drift([run], {"lstm": "#000000"}, "t").axes[0].get_lines()[0]
    assert list(top.get_xdata()) == list(line.get_xdata())
