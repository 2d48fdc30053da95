"""Verification: lowered code against independent computations (hand-written oracles,
torch.func.jacrev, torch.nn modules, the other backend)."""
