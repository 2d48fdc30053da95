"""LearnSetup made in Python refuses, in one line and before any training, what the CLI's
parsing would never hand it (an empty or string `cells`, empty or repeated tasks, a
negative char_steps)."""

import pytest

from gradlab.errors import GradlabError
from gradlab.training.learnability import LearnSetup


@pytest.mark.parametrize("options, words", [
    (dict(cells=()), "cells is empty"),
    (dict(tasks=()), "tasks is empty"),
    (dict(cells="lstm"), "one cell: ('lstm',)"),
    (dict(cells=("lstm", "lstm")), "names 'lstm' twice"),
    (dict(tasks=(("adding", 10), ("adding", 10))), "twice"),
    (dict(tasks=("adding", 10)), "(name, delay) pairs"),
    (dict(tasks=(("adding", 2.5),)), "got 2.5"),
    (dict(tasks=(("sorting", 5),)), "unknown task 'sorting'"),
    (dict(char_steps=-1), "char_steps must be an integer >= 0"),
    (dict(hidden=0), "hidden must be an integer >= 1"),
])
def test_refused_in_one_line(options, words):
    with pytest.raises(GradlabError) as err:
        LearnSetup(**options)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_defaults_and_a_list_of_cells_stand():
    assert LearnSetup().cells[0] == "rnn_tanh"
    assert LearnSetup(cells=["gru"], tasks=[("copy", 3)], char_steps=0).cells == ["gru"]
