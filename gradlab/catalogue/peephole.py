"""The peephole LSTM and Greff et al.'s eight variants of it, each a change to one definition.

Greff, Srivastava, Koutnik, Steunebrink & Schmidhuber 2015, "LSTM: A Search Space Odyssey"
(arXiv 1503.04069). The "vanilla" LSTM there is the one of Graves & Schmidhuber 2005:
the forget gate of Gers et al. 2000 and the peepholes of Gers & Schmidhuber 2000 (gates
see the cell through diagonal peepholes p, the output gate the new cell c'), trained
with full gradients through time.
"""

from ..symbolic.cell import declare
from ..symbolic.language import sigmoid, tanh
from ..registry import register

GREFF = "Greff et al. 2015, LSTM: A Search Space Odyssey (arXiv 1503.04069)"


def peephole_family(name, change, *, input_gate=True, forget_gate=True, output_gate=True,
                    input_activation=True, output_activation=True, peepholes=True,
                    coupled=False, gate_recurrence=False):
    """Declare peephole_lstm with one of Greff et al.'s changes (all defaults: the original)."""
    gates = [g for g, on in (("i", input_gate), ("f", forget_gate and not coupled),
                             ("o", output_gate)) if on]
    params = [f"{kind}_{g}" for kind in "WUb" for g in ("z", *gates)]
    params += [f"p_{g}" for g in gates] if peepholes else []
    params += [f"R_{a}{b}" for b in "ifo" for a in "ifo"] if gate_recurrence else []
    prime = "'" if gate_recurrence else ""   # the new gates are state: i' beside the old i

    def peephole_lstm(s):
        def affine(g):
            a = getattr(s, f"W_{g}") @ s.h + getattr(s, f"U_{g}") @ s.x + getattr(s, f"b_{g}")
            if gate_recurrence and g != "z":   # R_<from><to>: previous gate <from> into <to>
                for prev in "ifo":
                    a = a + getattr(s, f"R_{prev}{g}") @ getattr(s, prev)
            return a

        def gate(g, cell):
            if g not in gates:
                return 1
            a = affine(g) + getattr(s, f"p_{g}") * cell if peepholes else affine(g)
            return s.let(g + prime, sigmoid(a))

        z = s.let("z", tanh(affine("z")) if input_activation else affine("z"))
        i = gate("i", s.c)
        f = 1 - i if coupled else gate("f", s.c)
        c = s.let("c'", z * i + f * s.c)
        o = gate("o", c)
        h = (tanh(c) if output_activation else c) * o
        return (h, c, i, f, o) if gate_recurrence else (h, c)

    peephole_lstm.__doc__ = change if name == "peephole_lstm" else (
        f"{change} One change to peephole_lstm (the vanilla LSTM of Greff et al.).")
    memory = "-b_i" if coupled else ("b_f" if forget_gate else None)
    source = GREFF if name != "peephole_lstm" else "Gers & Schmidhuber 2000; " + GREFF
    return declare(name=name, state="h c i f o" if gate_recurrence else "h c", params=" ".join(
        params), gate_bias=memory, source=source)(peephole_lstm)


peephole_lstm = register(peephole_family(
    "peephole_lstm", "The vanilla LSTM of Greff et al.: gates peep at the cell through p."))
lstm_nig = register(peephole_family("lstm_nig", "No input gate: i = 1.", input_gate=False))
lstm_nfg = register(peephole_family("lstm_nfg", "No forget gate: f = 1.", forget_gate=False))
lstm_nog = register(peephole_family("lstm_nog", "No output gate: o = 1.", output_gate=False))
lstm_niaf = register(peephole_family(
    "lstm_niaf", "No input activation: z = W_z h + U_z x + b_z.", input_activation=False))
lstm_noaf = register(peephole_family(
    "lstm_noaf", "No output activation: h' = o ⊙ c'.", output_activation=False))
lstm_np = register(peephole_family(
    "lstm_np", "No peepholes: the same function as lstm, up to names.", peepholes=False))
lstm_cifg = register(peephole_family(
    "lstm_cifg", "Coupled input and forget gate: f = 1 - i.", coupled=True))
lstm_fgr = register(peephole_family(
    "lstm_fgr", "Full gate recurrence: the previous gate activations feed every gate.",
    gate_recurrence=True))
