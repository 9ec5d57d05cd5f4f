"""`latentface export`: ONNX with dynamic batch and latent size matches PyTorch; TorchScript too."""

import json

import onnx
import pytest
import torch

from latentface.anchors import AnchorLayout
from latentface.checkpoint import save_checkpoint
from latentface.cli import main
from latentface.inference.export import export_onnx, onnx_parity
from latentface.model import LatentRetinaFace

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentRetinaFace(backbone="resnet18", bridge="context", out_channels=16).eval()


@pytest.fixture(scope="module")
def weight(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    with torch.no_grad():  # non-trivial normalisation: it must travel inside the exported graph
        model.set_normalization(torch.linspace(-1, 1, 256), torch.linspace(0.5, 2, 256))
    save_checkpoint({"model": model.state_dict(), "config": model.config}, path)
    return path


def test_onnx_export_matches_pytorch_at_two_latent_sizes(model, weight, tmp_path, capsys):
    path = tmp_path / "tiny.onnx"
    assert (
        main(["export", "--weight", str(weight), "--format", "onnx", "--output", str(path), "--latent_size", "8", "8"])
        == 0
    )
    printed = capsys.readouterr().out
    card = json.loads(path.with_name("tiny.onnx.json").read_text())
    diffs = card["parity_max_abs_diff"]
    assert list(diffs) == ["2x256x8x8", "2x256x5x6"] and max(diffs.values()) < TOLERANCE
    assert "max |onnx - pytorch| at 2x256x5x6" in printed

    # two more latent sizes, one not square, checked independently of the command and printed for the record
    diffs = onnx_parity(model, path, [(10, 10), (7, 12)], batch=3, seed=1)
    print(f"ONNX parity (max abs difference): {diffs}")
    assert max(diffs.values()) < TOLERANCE

    graph = onnx.load(str(path))
    assert graph.opset_import[0].version >= 17
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 256, "height", "width"]
    assert [o.name for o in graph.graph.output] == ["logits", "boxes", "landmarks"]

    # the card describes the anchors well enough to rebuild them outside this package
    layout = AnchorLayout(
        levels=tuple(card["anchors"]["levels"]),
        sizes=tuple(map(tuple, card["anchors"]["sizes"])),
        ratios=tuple(card["anchors"]["ratios"]),
    )
    x = torch.zeros(1, 256, 7, 12)
    assert torch.equal(layout.generate(7 * 16, 12 * 16), model.anchors(x))
    assert card["config"] == model.config and card["variances"] == [0.1, 0.2]
    assert card["operating_point"] == {"conf": 0.6, "nms": 0.4, "topk": 5000, "keep": 750}  # the display point


def test_torchscript_export_runs_at_any_latent_size(model, weight, tmp_path, capsys):
    path = tmp_path / "tiny.pt"
    assert (
        main(
            [
                "export",
                "--weight",
                str(weight),
                "--format",
                "torchscript",
                "--output",
                str(path),
                "--latent_size",
                "6",
                "6",
                "--conf",
                "0.3",
                "--keep",
                "20",
            ]
        )
        == 0
    )
    card = json.loads(path.with_name("tiny.pt.json").read_text())
    assert card["operating_point"] == {"conf": 0.3, "nms": 0.4, "topk": 5000, "keep": 20}  # as exported
    diffs = card["parity_max_abs_diff"]
    assert len(diffs) == 2 and max(diffs.values()) < TOLERANCE
    assert "max |torchscript - pytorch|" in capsys.readouterr().out


def test_export_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"\x00" * 10)
    assert main(["export", "--weight", str(bad), "--output", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentface export: error: ") and "broken.pth: not a readable latentface checkpoint" in err
    with pytest.raises(ValueError, match="opset must be at least 17"):
        export_onnx(torch.nn.Identity(), tmp_path / "x.onnx", opset=13)


@pytest.mark.parametrize("size", [["0", "0"], ["40", "0"], ["-3", "8"]])
def test_export_rejects_an_empty_latent_size_naming_the_flag(weight, tmp_path, capsys, size):
    out = tmp_path / "x.onnx"
    assert main(["export", "--weight", str(weight), "--output", str(out), "--latent_size", *size]) == 2
    err = capsys.readouterr().err
    assert err.startswith("latentface export: error: --latent_size must be two sizes of at least 1") and (
        f"got {' '.join(size)}" in err
    )
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_to_an_unwritable_path_is_one_line_naming_it(weight, tmp_path, capsys, fmt):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_folder").mkdir()
    for out, reason in [
        (tmp_path / "a_folder", "is a folder; --output takes the file to write"),
        (tmp_path / "a_file" / "m.pt", "cannot write the export there"),
        ("/proc/latentface-test/m.pt", "cannot write the export there"),  # not writable, even by root
    ]:
        argv = ["export", "--weight", str(weight), "--format", fmt, "--output", str(out), "--no_check"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"latentface export: error: {out}: {reason}" + err.split(reason, 1)[1], err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder"] and not any(
        (tmp_path / "a_folder").iterdir()
    )


def test_a_torchscript_save_that_fails_names_the_path(weight, tmp_path, capsys, monkeypatch):
    # torch reports a failed write as a RuntimeError from C++ ("open file failed ..."): one line naming the path
    def fail(self, path, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:747] . open file failed with strerror: No space left")

    monkeypatch.setattr(torch.jit.ScriptModule, "save", fail)
    out = tmp_path / "m.pt"
    assert main(["export", "--weight", str(weight), "--format", "torchscript", "--output", str(out), "--no_check"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"latentface export: error: {out}: cannot write the TorchScript file ([enforce fail at inline_container.cc:747]"
        " . open file failed with strerror: No space left)\n"
    )
