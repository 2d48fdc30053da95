"""One rule for digits on the command line: gradlab reads numbers in ASCII digits 0-9 only,
in every option. Python's int() and float() also read full-width (１６) and other scripts'
digits (Arabic-Indic ٣); click's integer options took them while gradlab's own parsers
(--arch, --shard) refused them, --arch calling '１６' "not a positive integer". Each is now
refused alike: exit 2, one line naming the value and its ASCII spelling, nothing written."""

import pytest

from gradlab import GradlabError
from gradlab.checkpoint import parse_arch
from gradlab.errors import non_ascii
from gradlab.options import POSITIVE, SEED
from gradlab.reports.shards import parse_shard
from gradlab.training.learnability import parse_tasks
from conftest import assert_ok, assert_one_line_error, invoke, listing

RULE = "is not written in ASCII digits 0-9"
SWEEP = ("sweep", "--cells", "rnn_tanh", "--weight-scales", "1", "--gate-biases", "0",
         "--hidden", "2", "--batch", "1", "--steps", "2", "--max-steps", "2")


@pytest.mark.parametrize("args,value,ascii_form", [
    (("bench", "--hidden", "１６"), "'１６'", "'16'"),
    (("bench", "--repeats", "２"), "'２'", "'2'"),
    (("verify", "--seed", "٣"), "'٣'", "'3'"),                    # Arabic-Indic three
    (("report", "--steps", "１２"), "'１２'", "'12'"),
    (("train", "--char-steps", "０"), "'０'", "'0'"),
])
def test_click_integer_options_refuse_non_ascii_digits(args, value, ascii_form, tmp_path):
    result = invoke(*args, "--out", tmp_path / "r") if args[0] in ("report", "train") \
        else invoke(*args)
    assert_one_line_error(result, f"{value} {RULE}; write {ascii_form}")
    assert f"'{args[1]}'" in result.stderr                       # the option is named
    assert listing(tmp_path) == []


def test_arch_refuses_non_ascii_digits_naming_the_key(tmp_path):
    spec = "lstm:hidden=１６,inputs=2"
    with pytest.raises(GradlabError, match=f"hidden='１６' {RULE}; write '16'") as err:
        parse_arch(spec)
    assert "\n" not in str(err.value) and "not a positive integer" not in str(err.value)
    result = invoke("report", "--model", tmp_path / "none.pt", "--arch", spec,
                    "--out", tmp_path / "r")
    assert_one_line_error(result, f"--arch {spec!r}: hidden='１６' {RULE}; write '16'")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("shard,ascii_form", [("１/2", "'1/2'"), ("1/２", "'1/2'"),
                                               ("２/８", "'2/8'")])
def test_shard_refuses_non_ascii_digits_with_the_ascii_form(shard, ascii_form, tmp_path):
    result = invoke(*SWEEP, "--shard", shard, "--out", tmp_path / "s")
    assert_one_line_error(result, f"--shard {shard!r} {RULE}; write {ascii_form} (I/N")
    assert listing(tmp_path) == []


def test_tasks_and_number_lists_follow_the_same_rule(tmp_path):
    result = invoke("train", "--cells", "rnn_tanh", "--tasks", "adding:１０",
                    "--out", tmp_path / "t")
    assert_one_line_error(result, f"--tasks entry 'adding:１０': delay '１０' {RULE}; "
                                  "write '10'")
    result = invoke(*SWEEP[:3], "--weight-scales", "０.5", "--out", tmp_path / "s")
    assert_one_line_error(result, f"--weight-scales '０.5': '０.5' {RULE}; write '0.5'")
    assert_one_line_error(invoke("train", "--lr", "０.1", "--out", tmp_path / "t"),
                          f"'０.1' {RULE}; write '0.1'")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("text", ["16\u00a0", "\u00b2", "1\u200b6"])
def test_other_non_ascii_text_is_refused_without_a_guess(text, tmp_path):
    """A no-break space (int() strips it), a superscript two, a zero-width space: refused,
    and no ASCII spelling is offered where there is none."""
    result = invoke("bench", "--hidden", text)
    assert_one_line_error(result, f"{text!r} {RULE}")
    assert "write" not in result.stderr
    with pytest.raises(GradlabError, match=RULE):
        parse_shard(f"{text}/20")


def test_one_rule_for_every_parser():
    """What int() reads in non-ASCII digits, no gradlab parser reads; what it reads in
    ASCII digits, each reads as int() does."""
    for digits in ("１６", "١٦", "१६", "16"):
        assert int(digits) == 16                     # Python reads them all
        ascii_only = digits.isascii()
        readers = (lambda: POSITIVE.convert(digits, None, None),
                   lambda: SEED.convert(digits, None, None),
                   lambda: parse_arch(f"gru:hidden={digits},inputs=2").hidden,
                   lambda: parse_shard(f"{digits}/20")[0],
                   lambda: parse_tasks(f"adding:{digits}")[0][1])
        for read in readers:
            if ascii_only:
                assert read() == 16
            else:
                with pytest.raises(Exception, match=RULE) as err:
                    read()
                assert "\n" not in str(err.value)
        assert (non_ascii(digits) is None) == ascii_only


def test_ascii_digits_still_read(tmp_path):
    assert_ok(invoke("verify", "--cells", "rnn_tanh", "--seed", "3"))
    assert parse_shard("2/8") == (2, 8)
    assert parse_arch("lstm:hidden=16, inputs=2").hidden == 16
    assert non_ascii(16) is None and non_ascii("12") is None
