"""A second hostile probe: what gradlab knows by a cell's name (torch modules, closed-form
theory) is only for its own cell of that name; a torch module measured by jacrev must
return one state per sequence and must not be in training mode with noise; a user's words
in a declaration cannot inject markup. Each case was wrong or unguarded before."""

import pathlib
import textwrap

import pytest
import torch

import gradlab
from gradlab import registry
from gradlab.errors import GradlabError
from gradlab.interop import to_torch

from conftest import invoke

LEAKY = textwrap.dedent('''
    import gradlab
    from gradlab import tanh

    @gradlab.declare(state="h", params="W U b", name="rnn_tanh",
                     source="<script>alert(1)</script> [x](javascript:a) $ | ok")
    def leaky(s):
        """<img src=x onerror=alert(1)>"""
        return 0.96 * s.h + 0.04 * tanh(s.W @ s.h + s.U @ s.x + s.b)
''')


@pytest.fixture
def leaky(tmp_path):
    path = tmp_path / "leaky.py"
    path.write_text(LEAKY)
    return gradlab.cell(f"{path}:leaky")


def test_a_users_cell_that_shares_a_builtin_name_gets_nothing_by_name(leaky, tmp_path):
    assert leaky.name == "rnn_tanh" and not registry.builtin(leaky)
    assert registry.builtin(gradlab.cell("rnn_tanh"))
    with pytest.raises(GradlabError, match="a cell of your own that shares a built-in"):
        to_torch(leaky, leaky.init_params(4, 3, seed=0))
    out = tmp_path / "r"
    result = invoke("report", "--cells", f"{tmp_path / 'leaky.py'}:leaky", "--hidden", "8",
                    "--inputs", "3", "--steps", "30", "--batch", "2", "--out", out)
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "½ ln χ" not in text and "dynamic mean field predicts" in text


def test_a_declarations_words_cannot_inject_markup(leaky, tmp_path):
    shown = leaky._repr_markdown_()
    assert "<script>" not in shown and "<img" not in shown
    assert "\\[x](javascript" in shown                  # an escaped [ makes no link
    from gradlab.documents.derivation import markdown
    text = markdown(leaky)
    assert "<script>" not in text and "<img" not in text and "\\$" in text


class OneRow(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4, dtype=torch.float64)

    def forward(self, x, h):
        return torch.tanh(self.lin(x[:1]) + h[:1])           # one row, whatever the batch


class Noisy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4, dtype=torch.float64)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x, h):
        return torch.tanh(self.drop(self.lin(x)) + h)


def test_a_module_must_return_one_state_per_sequence_and_be_in_eval_mode():
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    h0 = torch.zeros(2, 4, dtype=torch.float64)
    with pytest.raises(GradlabError, match=r"returned \[\(1, 4\)\].*\[\(2, 4\)\]"):
        gradlab.gradient_flow(OneRow(), xs, state0=h0)
    with pytest.raises(GradlabError, match="training mode with Dropout.*module.eval"):
        gradlab.gradient_flow(Noisy(), xs, state0=h0)
    flow = gradlab.gradient_flow(Noisy().eval(), xs, state0=h0)
    assert flow.log_norm().shape == (2, 5)


def test_a_float32_jacobian_agrees_at_float32_precision_and_torchstep_checks_its_args():
    cell = gradlab.cell("gru")
    p = cell.init_params(5, 3, seed=0, dtype=torch.float32)
    exact = cell.jacobian_fn("state")
    noisy = lambda P, s, x: exact(P, s, x) * (1 + 3e-7)             # noqa: E731 float32 ulp
    assert gradlab.check_jacobian(noisy, cell, p).ok
    assert not gradlab.check_jacobian(noisy, cell, p, rtol=1e-8).ok
    from gradlab.flow.module import TorchStep
    with pytest.raises(GradlabError, match="direction 'sideways' is not one of"):
        TorchStep(torch.nn.LSTM(3, 4), "sideways")
    with pytest.raises(GradlabError, match="TorchStep wraps nn.RNN, nn.LSTM or nn.GRU"):
        TorchStep(torch.nn.LSTMCell(3, 4))


class HalfStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4).half()

    def forward(self, x, h):
        return torch.tanh(self.lin(x) + h)


class IntegerStep(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4, dtype=torch.float64)

    def forward(self, x, h):
        return (self.lin(x) + h).round().long()


def test_a_module_in_half_precision_or_with_integer_states_is_one_line():
    xs = torch.randn(5, 2, 3)
    with pytest.raises(GradlabError, match="computes in torch.float16; gradlab measures"):
        gradlab.gradient_flow(HalfStep(), xs, state0=torch.zeros(2, 4, dtype=torch.float16))
    with pytest.raises(GradlabError, match=r"returned \[torch.int64\]: a state is real"):
        gradlab.gradient_flow(IntegerStep(), xs.double(),
                              state0=torch.zeros(2, 4, dtype=torch.float64)).log_norm()


def test_two_names_that_print_alike_are_refused():
    """mu_r and μ_r both print as μ_r: the equations read h' = μ_r ⊙ μ_r."""
    with pytest.raises(gradlab.GradlabError, match="'μ_r' and 'mu_r' would print alike "
                                                   r"\(\$\\mu_\{r\}\$ in the derivation's "
                                                   r"LaTeX\); rename one"):
        @gradlab.declare(state="h", params="W V U b", source="test")
        def twins(s):
            a = s.let("mu_r", gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b))
            b = s.let("μ_r", gradlab.sigmoid(s.V @ s.h))
            return a * b


def test_a_declaration_that_changes_as_it_runs_is_refused():
    """A declaration reading random numbers gave another constant at every `gradlab
    derive`, passed verify, and two sweep shards (each importing the file) measured two
    different cells; one doubling a global made gradlab.stack layers 2x, 4x, 8x the
    declared cell. Both are now refused when declared."""
    import random

    counter = [1.0]

    def doubling(s):
        counter[0] *= 2
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b) * counter[0]

    def drawing(s):
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b) * random.random()

    for fn in (doubling, drawing):
        with pytest.raises(GradlabError, match=f"cell '{fn.__name__}' gives other equations "
                                               "each time its declaration runs"):
            gradlab.declare(state="h", params="W U b", source="test")(fn)

    def seeded(s):                       # the same numbers at every run: one cell
        rng = random.Random(0)
        return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b) * rng.random()

    cell = gradlab.declare(state="h", params="W U b", source="test")(seeded)
    assert len(gradlab.stack(cell, 2).state_names) == 2


def test_a_declaration_sharing_one_value_many_times_is_compared_once_per_value():
    """The check that a declaration gives the same equations twice first compared srepr
    strings, which write a shared subtree out at every use: 30 levels of e = tanh(e) +
    0.5 e (a DAG of 60 nodes, a tree of 2^30) never finished. It reads each node once."""
    def shared(s):
        e = s.W @ s.h + s.U @ s.x + s.b
        for _ in range(30):
            e = gradlab.tanh(e) + e * 0.5
        return e

    cell = gradlab.declare(state="h", params="W U b", source="test")(shared)
    assert cell.state_names == ("h",)


def test_a_cell_file_that_changes_directory_moves_nothing(tmp_path, monkeypatch):
    """A cell file that called os.chdir("/") as it loaded moved a relative --out there
    (report wrote /cfo/index.html), and a relative cell path was then 'no such file'."""
    (tmp_path / "away").mkdir()
    (tmp_path / "mover.py").write_text(
        "import os\nos.chdir('away')\nimport gradlab\n"
        "@gradlab.declare(state='h', params='W U b', source='test')\n"
        "def c(s):\n    return gradlab.tanh(s.W @ s.h + s.U @ s.x + s.b)\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("report", "--cells", "mover.py:c", "--hidden", "3", "--inputs", "2",
                    "--steps", "4", "--batch", "2", "--out", "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "index.html").is_file() and not (tmp_path / "away" / "out").exists()
    assert pathlib.Path.cwd() == tmp_path


def test_a_cell_that_steps_to_nan_has_no_jacobian_to_agree_with(tmp_path, monkeypatch):
    """h' = tanh(W h + U x + b) + log(-exp(h)) is nan everywhere, but the derivative of
    its log term is 1: a Jacobian of tanh's plus I "agreed" with it, exit 0."""
    (tmp_path / "logneg.py").write_text(textwrap.dedent('''
        import gradlab
        from gradlab import tanh, log, exp

        @gradlab.declare(state="h", params="W U b", source="a log of a negative")
        def c(s):
            return tanh(s.W @ s.h + s.U @ s.x + s.b) + log(-exp(s.h))
        '''))
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import torch

        def fn(params, state, x):
            h = state[0]
            a = h @ params["W"].T + x @ params["U"].T + params["b"]
            return torch.diag_embed(1 - torch.tanh(a) ** 2) @ params["W"] + torch.eye(h.shape[1])
        '''))
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "mine.py:fn", "--cell", "logneg.py:c")
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr == ("gradlab: error: cell 'c' steps to nan or inf at the drawn states: "
                             "its equations give no number there (a sqrt or log of a negative "
                             "value?), so neither has a Jacobian; pass states= where the cell "
                             "is defined\n")
