"""Session 36's hostile-input probe of the command line: each test a defect it found."""


import pytest
from conftest import run_gradlab

torch = pytest.importorskip("torch")

ARCH = "lstm:hidden=8,inputs=4"


_gradlab = run_gradlab


def _one_line(run):
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, (run.returncode, run.stderr)
    assert lines[0].startswith("gradlab: ") and "internal error" not in lines[0], lines
    return lines[0]


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2fnuz"])
def test_a_float8_checkpoint_is_read_as_its_values(tmp_path, dtype):
    """A state dict saved in float8 (half and bfloat16 are read) ended in 'internal error
    (NotImplementedError: "isfinite" not implemented for 'Float8_e4m3fn')': float8 holds
    each weight exactly in float32, and the report now measures it."""
    state = torch.nn.LSTM(4, 8).state_dict()
    torch.save({k: v.to(getattr(torch, dtype)) for k, v in state.items()}, tmp_path / "m.pt")
    run = _gradlab(tmp_path, "report", "--model", "m.pt", "--arch", ARCH, "--steps", "4",
                   "--batch", "2", "--out", "r")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "r" / "report.md").is_file()


def test_a_float8_checkpoint_holding_nan_is_refused_as_nan(tmp_path):
    # the nan is written before the cast: torch 2.4.1 has no fill for float8 ('"fill_out"
    # not implemented for Float8_e4m3fn'); float8_e4m3fn holds nan either way
    state = torch.nn.LSTM(4, 8).state_dict()
    state["bias_hh_l0"][3] = float("nan")
    state = {k: v.to(torch.float8_e4m3fn) for k, v in state.items()}
    assert torch.isnan(state["bias_hh_l0"][3].float())
    torch.save(state, tmp_path / "m.pt")
    line = _one_line(_gradlab(tmp_path, "report", "--model", "m.pt", "--arch", ARCH,
                              "--steps", "4", "--batch", "2", "--out", "r"))
    assert "'bias_hh_l0'" in line and "nan" in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(not hasattr(torch, "float4_e2m1fn_x2"), reason="torch without float4")
def test_a_packed_float4_checkpoint_is_refused_naming_its_dtype(tmp_path):
    """float4_e2m1fn_x2 packs two values per element: no float32 holds it."""
    state = torch.nn.LSTM(4, 8).state_dict()
    torch.save({k: torch.zeros(v.shape, dtype=torch.float4_e2m1fn_x2) for k, v in state.items()},
               tmp_path / "m.pt")
    line = _one_line(_gradlab(tmp_path, "report", "--model", "m.pt", "--arch", ARCH,
                              "--steps", "4", "--batch", "2", "--out", "r"))
    assert "float4_e2m1fn_x2" in line and "float32" in line, line
    assert not (tmp_path / "r").exists()


class _Whole(torch.nn.Module):
    """A whole model: an LSTM at rnn., a GRU at enc.rnn., a head."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(4, 8)
        self.enc = torch.nn.ModuleDict({"rnn": torch.nn.GRU(4, 8)})
        self.head = torch.nn.Linear(8, 2)


@pytest.mark.parametrize("arch, says", [
    ("gru:hidden=8,inputs=4,prefix=enc.", "try prefix=enc.rnn.)"),
    ("gru:hidden=8,inputs=4", "try prefix=enc.rnn.)"),
])
def test_the_wrapper_prefix_offered_is_under_the_prefix_and_of_the_arch(tmp_path, arch, says):
    """--arch gru:...,prefix=enc. of a file holding rnn.* (an LSTM) and enc.rnn.* (a GRU)
    was told 'saved from a wrapper? try prefix=rnn.': a name outside the prefix given,
    and the LSTM's, which --arch gru then refused by its shapes. The prefix offered is
    now the one under the prefix given, whose shapes are --arch's."""
    torch.save(_Whole().state_dict(), tmp_path / "m.pt")
    line = _one_line(_gradlab(tmp_path, "report", "--model", "m.pt", "--arch", arch,
                              "--steps", "4", "--batch", "2", "--out", "r"))
    assert line.endswith(says), line
    assert not (tmp_path / "r").exists()
