"""Options generated from settings dataclasses (videonet.options): types, defaults, choices and minimums
checked when the command line is parsed, arguments the command declares itself."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest
import typer
from typer.testing import CliRunner

from videonet.errors import UserError
from videonet.options import check_fields, from_flat, settings_options


@dataclass(frozen=True)
class Toy:
    """One field of each kind the generator supports."""

    data: str = field(default="", metadata={"help": "Positional: the command declares it as an argument."})
    steps: int = field(default=10, metadata={"help": "Steps.", "min": 1})
    rate: float | None = field(default=None, metadata={"help": "Optional."})
    fast: bool = field(default=False, metadata={"help": "A flag."})
    progress: bool = field(default=True, metadata={"help": "A flag that is on by default."})
    tags: tuple[str, ...] = field(default=("a",), metadata={"help": "Repeatable."})
    size: tuple[int, int] = field(default=(800, 1333), metadata={"help": "Two values."})
    device: str = field(default="auto", metadata={"help": "Closed.", "choices": ("auto", "cpu", "cuda:N")})
    scales: int = field(default=2, metadata={"help": "Closed ints.", "choices": (1, 2)})
    internal: int = field(default=3, metadata={"cli": False})


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @settings_options([("toy", Toy)])
    def run(data: str = typer.Argument(..., help="Declared by the command."), **settings) -> None:
        typer.echo(repr(from_flat(Toy, dict(settings, data=data))))

    return app


def _run(*args: str):
    return CliRunner().invoke(_app(), list(args))


def test_defaults_are_the_fields_and_the_dataclass_comes_back():
    result = _run("d")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(Toy(data="d"))


def test_every_kind_of_field_parses_into_its_type():
    result = _run("d", "--steps", "1", "--rate", "0.5", "--fast", "--no-progress", "--tags", "x", "--tags", "y",
                  "--size", "512", "1024", "--device", "cuda:1", "--scales", "1")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == repr(Toy("d", 1, 0.5, True, False, ("x", "y"), (512, 1024), "cuda:1", 1))


def test_internal_fields_stay_off_the_command_line():
    assert _run("d", "--internal", "4").exit_code == 2  # click: no such option


@pytest.mark.parametrize("name, value, message", [
    ("steps", 0, "--steps must be at least 1"),
    ("device", "tpu", "--device 'tpu': expected auto, cpu, cuda:N"),
    ("device", "cuda:x", "--device 'cuda:x'"),
    ("scales", 3, "--scales 3: expected 1, 2"),
])
def test_values_outside_the_field_are_refused_at_parse_time(name, value, message):
    result = _run("d", f"--{name}", str(value))
    assert isinstance(result.exception, UserError) and message in str(result.exception)
    with pytest.raises(UserError) as refused:  # the same rule for settings built in code
        check_fields(Toy(**{name: value}))
    assert message in str(refused.value)


def test_the_boundaries_pass():
    assert _run("d", "--steps", "1", "--device", "cuda:0", "--scales", "2").exit_code == 0
    check_fields(Toy(steps=1, device="cuda:12"))


def test_the_help_shows_the_choices_and_the_sections():
    result = _run("--help")
    assert "[auto|cpu|cuda:N]" in result.output and "Toy" in result.output


@pytest.mark.parametrize("option, value, message", [
    ("--classifier", "resnet5", "--classifier 'resnet5': expected resnet50, efficientnet-lite0"),
    ("--precision", "fp8", "--precision 'fp8': expected auto, fp32, bf16, fp16"),
    ("--engine", "onnx", "--engine 'onnx': expected auto, torch, openvino"),
    ("--device", "tpu", "--device 'tpu': expected auto, cpu, cuda, cuda:N"),
    ("--decoder", "nvdec", "--decoder 'nvdec': expected auto, pyav, torchcodec"),
])
def test_curate_refuses_a_closed_choice_in_one_line_before_running(option, value, message, monkeypatch, capsys,
                                                                   tmp_path):
    from videonet.cli import main

    monkeypatch.setattr(sys, "argv", ["videonet", "curate", "--out", str(tmp_path / "run"), option, value])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert not (tmp_path / "run").exists()
