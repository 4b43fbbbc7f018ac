from __future__ import annotations

from fmnist.pipeline.report import epoch_rows, model_markdown, reuse_line


def test_epoch_rows_read_the_train_stages_history_csv() -> None:
    rows = epoch_rows("epoch,loss,val_loss\n1,0.9123456789,1.0\n2,0.5,0.6\n")
    assert rows == [
        {"epoch": 1, "loss": 0.912346, "val_loss": 1.0},
        {"epoch": 2, "loss": 0.5, "val_loss": 0.6},
    ]
    assert epoch_rows("epoch,loss\n") == []


def test_model_markdown_names_version_aliases_run_and_summary() -> None:
    text = model_markdown(
        model_display_name="패션 MNIST 모델",
        summary='Model: "패션 MNIST 모델"\n Total params: 79,510',
        metrics={"test_accuracy": 0.85, "test_loss": 0.41},
        registered={
            "name": "fashion-mnist",
            "version": 3,
            "run_id": "abc123",
            "aliases": ["challenger"],
        },
        experiment="brave-fox-1234",
    )
    assert "`fashion-mnist` version **3**" in text
    assert "@challenger" in text
    assert "`abc123`" in text
    assert "| test_accuracy | 0.8500 |" in text
    assert "79,510" in text
    assert "dvc exp apply brave-fox-1234" in text


def test_a_reused_run_says_so_first_with_the_version_and_run_it_reused() -> None:
    line = reuse_line(4, "abc123")
    assert line == (
        "reused version 4 from run abc123: DVC restored the pipeline's outputs "
        "(same data, code and params); pass force=true to retrain"
    )
    text = model_markdown(
        model_display_name="m",
        summary="Total params: 1",
        metrics={"test_accuracy": 0.85},
        registered={"name": "fashion-mnist", "version": 4, "run_id": "abc123", "aliases": []},
        experiment="e",
        note=line,
    )
    assert text.startswith(line + "\n\n# fashion-mnist v4\n")
