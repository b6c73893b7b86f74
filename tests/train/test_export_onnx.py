"""The ONNX export is one file that runs alone, written without the toolchain's chatter."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from lovaszseg.export import (
    ONNX_TOOLCHAIN_LOGGERS,
    PaddedNet,
    export_onnx,
    external_data_files,
    file_contents,
)


def run_alone(path, images: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.numpy()})[0]


@pytest.fixture(scope="module")
def conv_net() -> PaddedNet:
    torch.manual_seed(0)
    return PaddedNet(nn.Conv2d(3, 2, kernel_size=3, padding=1), multiple=8).eval()


def test_the_exported_file_copied_alone_runs_like_the_network(conv_net, tmp_path, caplog, capsys):
    written = tmp_path / "export" / "model.onnx"
    written.parent.mkdir()
    (tmp_path / "export" / "model.onnx.data").write_bytes(b"an earlier export's weights")
    caplog.set_level(logging.DEBUG)
    with torch.no_grad():
        export_onnx(conv_net, torch.randn(1, 3, 16, 16), written, opset=18)
    toolchain = [r for r in caplog.records if r.name.split(".")[0] in ("onnxscript", "onnx_ir")]
    assert [r for r in toolchain if r.levelno < logging.WARNING] == []
    assert capsys.readouterr().out == ""  # no "[torch.onnx] ..." progress lines
    assert sorted(p.name for p in written.parent.iterdir()) == ["model.onnx"]
    assert external_data_files(written) == []

    alone = tmp_path / "elsewhere" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(written, alone)
    images = torch.randn(2, 3, 21, 13, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = conv_net(images).numpy()
    exported = run_alone(alone, images)
    assert exported.shape == expected.shape == (2, 2, 21, 13)
    assert np.abs(exported - expected).max() <= 1e-5
    assert file_contents(alone, "onnx").endswith("weights inside: the file runs alone")


def test_a_model_with_its_weights_outside_names_the_file_to_keep_beside_it(tmp_path):
    weight = onnx.numpy_helper.from_array(np.ones((1024,), np.float32), name="w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "w"], ["y"])],
        "add",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1024])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1024])],
        [weight],
    )
    path = tmp_path / "big.onnx"
    onnx.save_model(
        onnx.helper.make_model(graph),
        str(path),
        save_as_external_data=True,
        location="big.onnx.data",
        size_threshold=0,
    )
    assert external_data_files(path) == [tmp_path / "big.onnx.data"]
    described = file_contents(path, "onnx")
    assert f"its weights are in {tmp_path / 'big.onnx.data'}" in described
    assert "keep the files together" in described


def test_the_toolchain_loggers_are_the_ones_that_log_during_an_export():
    """The names silenced are real: each is a logger its package creates on import."""
    import onnx_ir.passes.common  # noqa: F401
    import onnxscript.optimizer  # noqa: F401

    existing = logging.root.manager.loggerDict
    for name in ONNX_TOOLCHAIN_LOGGERS:
        assert any(logger == name or logger.startswith(name + ".") for logger in existing), name
