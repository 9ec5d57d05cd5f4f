"""The command line's one error boundary: every subcommand answers bad input with one line
``latentface <command>: error: <message>`` naming what is wrong, exit status 2, no traceback."""

import pytest

from latentface.cli import SUBCOMMANDS, USAGE_ERROR, main

MISSING = "/nonexistent/latentface-test"

BAD_INPUT = {
    "synth": (["--root", "{tmp}/s", "--train", "1", "--val", "1", "--size", "100"], "multiple of 16"),
    "encode": (["--images", MISSING, "--labels", f"{MISSING}/labels.txt", "--root", "{tmp}/e"], MISSING),
    "stats": (["--dataset_root", MISSING], MISSING),
    "train": (["--dataset_root", MISSING, "--device", "cpu", "--no_wandb"], MISSING),
    "detect": (["--latent", f"{MISSING}/a.npy", "--weight", f"{MISSING}/w.pth"], MISSING),
    "evaluate": (["--weight", f"{MISSING}/w.pth", "--dataset_root", MISSING], MISSING),
    "export": (["--weight", f"{MISSING}/w.pth", "--output", "{tmp}/m.onnx"], MISSING),
    "bench": (["--sections", "nope", "--out", "{tmp}/b"], "nope"),
    "demo": (["--quick", "--codec", "nope", "--out", "{tmp}/d"], "nope"),
    "codec": (["report", "--weights", f"{MISSING}/learned.pt"], MISSING),
}


def test_every_subcommand_but_kaggle_has_a_bad_input_case():
    # kaggle's bad inputs (no CLI, no credentials) are covered by tests/test_kaggle.py
    assert set(BAD_INPUT) == set(SUBCOMMANDS) - {"kaggle"}


@pytest.mark.parametrize("command", sorted(BAD_INPUT))
def test_bad_input_is_one_line_and_exit_status_2(command, tmp_path, capsys):
    args, named = BAD_INPUT[command]
    rc = main([command, *(a.replace("{tmp}", str(tmp_path)) for a in args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == USAGE_ERROR == 2
    assert err and err[-1].startswith(f"latentface {command}: error: "), err
    assert named in err[-1]
    assert not any("Traceback" in line for line in err)
