"""``python -m spinekit`` (also what ``torchrun -m spinekit train ...`` runs)."""

from spinekit.cli.main import app

if __name__ == "__main__":
    app()
