"""What a long walk keeps, measured in a fresh process: O(T B (S + m)) numbers for the
states and hoisted inputs, and nothing per lag beyond its logs. Each lag's scale used to
keep three (B,) tensors (~1 KB a lag) and the forward run one view per step and array,
so at lstm n = 16 a step cost 570 numbers: a critical_init of 10^7 steps that its
estimate let through was killed by the OOM killer instead."""

import json
import subprocess
import sys

import pytest

MEASURE = r"""
import json, sys, torch, gradlab
from gradlab import budget

def peak():        # this process's own peak (ru_maxrss carries the parent's over exec)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
call, T = sys.argv[1], int(sys.argv[2])
cell = gradlab.cell("lstm")
params = cell.init_params(16, 5, seed=0)
xs = torch.randn(T, 1, 5, dtype=torch.float64)
seen = {}                    # what the call's own memory check asked for
budget.ensure_fits = lambda need, **kw: seen.setdefault("need", need)
before = peak()
if call == "gradient_flow":
    gradlab.gradient_flow(cell, params, xs).log_norm("spectral")
else:
    gradlab.lyapunov(cell, params, xs, 4)
grown = peak() - before
print(json.dumps({"grown": grown, "lower": seen["need"],
                  "generous": budget.flow_bytes(hidden=16, inputs=5, steps=T, batch=1)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("call", ["gradient_flow", "lyapunov"])
def test_a_long_walk_keeps_its_states_and_inputs_and_little_more(call):
    T = 60_000
    out = subprocess.run([sys.executable, "-c", MEASURE, call, str(T)], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    got = json.loads(out.splitlines()[-1])
    per_step = got["grown"] / 8 / T                     # float64 numbers a step
    assert per_step < 250, got                          # (was 570; states, inputs: 101)
    # the Python call's refusal never stops a call that fits, the CLI's is generous
    assert got["lower"] <= got["grown"] <= got["generous"], got
