"""What a `gradlab train` run is asked to do: `LearnSetup` (cells, tasks and sizes), read
from the command line (`parse_tasks`) or made in Python, checked in one line before any
training (`LearnSetup` itself for its shape and numbers, `check` for the cells, which may
load files, `ensure_fits` for memory)."""

import dataclasses

from .charlm import CharSetup
from .loop import TrainSetup
from .tasks import make
from .. import registry
from ..errors import GradlabError, entries, integer, not_whole

DEFAULT_CELLS = ("rnn_tanh", "lstm", "gru", "prototype_lstm", "normalized_lstm",
                 "pseudo_lstm")
DEFAULT_TASKS = (("adding", 10), ("adding", 30), ("copy", 20))


@dataclasses.dataclass(frozen=True)
class LearnSetup:
    cells: tuple = DEFAULT_CELLS
    tasks: tuple = DEFAULT_TASKS          # (name, delay) pairs
    hidden: int = 32
    batch: int = 32
    steps: int = 200
    lr: float = 1e-2
    gate_bias: float = 1.0
    drift_steps: int = 50
    char_steps: int = 200                 # 0: no character-level LSTM
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self):
        """Refuse, in one line, what no run can use (the CLI parses its options into a
        valid setup; one made in Python got a traceback on tasks=() after its cells had
        trained, ran cells=() to an empty report, and read cells="lstm" as l, s, t, m)."""
        cells, tasks = self.cells, self.tasks
        if not isinstance(cells, (tuple, list)) or not all(isinstance(c, str) for c in cells):
            raise GradlabError(f"cells must be a tuple of cell names, got {cells!r}"
                               + (f" (one cell: ({cells!r},))" if isinstance(cells, str) else ""))
        if not isinstance(tasks, (tuple, list)) or not all(
                isinstance(t, (tuple, list)) and len(t) == 2 and isinstance(t[0], str)
                for t in tasks):
            raise GradlabError(f"tasks must be a tuple of (name, delay) pairs such as "
                               f"(('adding', 10),), got {tasks!r}")
        for what, given in (("cells", list(cells)), ("tasks", [tuple(t) for t in tasks])):
            if not given:
                raise GradlabError(f"{what} is empty: give one or more")
            twice = [x for k, x in enumerate(given) if x in given[:k]]
            if twice:
                raise GradlabError(f"{what} names {twice[0]!r} twice; name each once")
        for name, delay in tasks:
            make(name, delay)                    # a bad name or delay, in one line
        integer(self.char_steps, "char_steps", 0)
        self.train_setup()                       # the numbers (TrainSetup checks them)

    def train_setup(self):
        return TrainSetup(hidden=self.hidden, batch=self.batch, steps=self.steps, lr=self.lr,
                          gate_bias=self.gate_bias, drift_steps=self.drift_steps,
                          seed=self.seed, device=self.device, dtype=self.dtype)

    def char_setup(self):
        return CharSetup(steps=self.char_steps, seed=self.seed, device=self.device,
                         dtype=self.dtype)


def parse_tasks(spec):
    """'adding:10,adding:25,copy:25' -> (("adding", 10), ...); one line on a bad entry."""
    out = []
    for part in entries(spec, "--tasks"):       # 'adding:3,' refused, not dropped
        name, _, delay = part.partition(":")
        if not_whole(delay):
            try:                                # '+5', '1_0', '２５': numbers int() reads,
                int(delay)                      # spelt otherwise than gradlab reads them
            except ValueError:
                raise GradlabError(f"--tasks entry {part!r} is not NAME:DELAY (e.g. "
                                   "adding:25)") from None
            raise GradlabError(f"--tasks entry {part!r}: delay {not_whole(delay)}")
        value = int(delay)
        try:
            make(name, value)                   # refuses a bad name or delay, one line
        except GradlabError as err:
            raise GradlabError(f"--tasks entry {part!r}: {err}") from None
        if (name, value) in out:                # '02' and '2' are one delay
            raise GradlabError(f"--tasks {spec!r} names the task {name}:{value} twice")
        out.append((name, value))
    if not out:
        raise GradlabError(f"--tasks {spec!r} needs one or more distinct NAME:DELAY entries")
    return tuple(out)


def ensure_fits(setup):
    """Refuse (one line) a run whose largest cell and task cannot fit in memory, from the
    sizes alone, before anything is allocated (`budget.ensure_train_fits`)."""
    from .. import budget
    train = setup.train_setup()
    tasks = [(f"{name}:{delay}", task.steps, task.inputs)
             for name, delay in setup.tasks for task in (make(name, delay),)]
    return budget.ensure_train_fits(setup.cells, tasks, setup.hidden, setup.batch,
                                    dtype=setup.dtype, device=setup.device,
                                    test_batch=train.test_batch,
                                    measure_batch=train.measure_batch,
                                    probe_steps=train.probe_steps)


def check(setup):
    """The cells, each read now (a file's cell loads here; LearnSetup checked the rest)."""
    for name in setup.cells:
        registry.cell(name)
