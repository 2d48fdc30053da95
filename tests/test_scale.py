"""The exact scaling of a running product (gradlab/flow/scale.py): what it records and
when it rescales, against frexp taken the plain way, at the edges of its drift window."""

import math

import pytest
import torch

from gradlab.flow.scale import Scale


def reference(norms, drift):
    """Per row (E before, E after) for matrices of these norms as the product holds them
    (the true norm is the norm times 2^E before), rescaled once frexp's |e| > drift."""
    total, rows = 0, []
    for v in norms:
        e = math.frexp(v)[1]
        before = total
        if abs(e) > drift:
            total += e
        rows.append((before, total))
    return rows


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_records_and_rescales_where_frexp_says(dtype):
    drift = Scale.DRIFT[dtype]
    # norms at and just past both edges of the window [2^(-drift-1), 2^drift)
    edge = [2.0 ** drift, 2.0 ** drift * (1 - 2 ** -20), 2.0 ** (-drift - 1),
            2.0 ** (-drift - 1) * (1 - 2 ** -20), 3.0, 0.75]
    scale = Scale(len(edge), 1, dtype, "cpu")
    kept = []
    for k, v in enumerate(edge, 1):
        M = torch.tensor([[v]], dtype=dtype)            # ||M||_F = v, exactly
        scale(M, k)
        kept.append(float(M))
    want = reference(edge, drift)
    assert [a for _, a in want] == [drift + 1] * 3 + [0] * 3     # both edges crossed once
    rows = slice(0, len(edge))
    ln2 = math.log(2)
    assert scale.frobenius(rows)[:, 0].tolist() == pytest.approx(
        [math.log(v) + b * ln2 for v, (b, _) in zip(edge, want)], rel=1e-15, abs=1e-15)
    assert scale.log(rows)[:, 0].tolist() == pytest.approx([a * ln2 for _, a in want],
                                                           rel=1e-15)
    # what the matrix was left at: itself, or itself times 2^-e where it was rescaled
    assert kept == [math.ldexp(v, b - a) for v, (b, a) in zip(edge, want)]
    assert scale.stored(rows)[:, 0].tolist() == kept


def test_rows_read_in_any_order_and_a_zero_norm():
    """The loss walk records rows from the last to the first; a zero product stays zero."""
    scale = Scale(3, 2, torch.float64, "cpu")
    for k, v in ((3, 2.0 ** 70), (2, 1.0), (1, 0.0)):
        scale(torch.full((2, 1), v, dtype=torch.float64), k)
    logs = scale.frobenius(slice(0, 3))
    assert logs[2].tolist() == pytest.approx([70 * math.log(2)] * 2, rel=1e-15)
    assert logs[1].tolist() == pytest.approx([71 * math.log(2)] * 2, rel=1e-15)  # 1 * 2^71
    assert logs[0].tolist() == [-math.inf, -math.inf]


def test_a_nan_sequence_anywhere_in_the_batch_takes_the_careful_norm(monkeypatch):
    """min and max skip a nan that is not first in the list: the check must not."""
    calls = []
    norm = Scale.norm

    def counted(self, M, batch, exact=False):
        calls.append(exact)
        return norm(self, M, batch, exact)

    monkeypatch.setattr(Scale, "norm", counted)
    for where in range(3):
        calls.clear()
        values = [1.0, 2.0, 3.0]
        values[where] = math.nan
        scale = Scale(1, 3, torch.float64, "cpu")
        scale(torch.tensor(values, dtype=torch.float64)[:, None], 1)
        assert calls[:2] == [False, True], where          # the careful norm was taken
        logs = scale.frobenius(slice(0, 1))[0].tolist()
        assert math.isnan(logs[where])
        assert [v for i, v in enumerate(logs) if i != where] == pytest.approx(
            [math.log(v) for i, v in enumerate(values) if i != where], rel=1e-15)
