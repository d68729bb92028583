"""`python -m p2d`: the command line, so that `torchrun --nproc-per-node N -m p2d train ...` works."""

from p2d.cli import app

if __name__ == "__main__":
    app(prog_name="p2d")
